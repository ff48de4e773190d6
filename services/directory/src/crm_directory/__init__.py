"""The directory service: users, departments and sign-in."""
