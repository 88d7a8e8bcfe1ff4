"""Accounts use Django's own user model; this app holds the sign-up and sign-in pages."""
