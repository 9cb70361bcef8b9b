"""Real protocol servers the tests run on loopback."""
