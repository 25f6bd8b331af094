"""The Notificator's database: tables, and the queries the consumers, worker and API share."""
