"""The Processing provider "MISR" (id ``misr``)."""
