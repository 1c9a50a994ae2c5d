from django.contrib.auth.hashers import PBKDF2PasswordHasher


class FastPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """Same algorithm name, few iterations: the hash records its iteration
    count, so servers with the default hashers still verify it."""

    iterations = 1000
