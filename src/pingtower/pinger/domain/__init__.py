"""Pure decisions of the Pinger: status machine, schedule maths, monitor validation."""
