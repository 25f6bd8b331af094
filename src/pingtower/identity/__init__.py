"""The embedded mode's built-in login: users with roles, sessions (browser cookie or bearer
token), API keys, and the first-start admin account. The distributed mode uses Keycloak."""
