"""Public identifiers: random, prefixed, and never the database primary key."""

import secrets
import string

LOWER_ALNUM = string.ascii_lowercase + string.digits
UPPER_ALNUM = string.ascii_uppercase + string.digits
ALNUM = string.ascii_letters + string.digits


def random_string(length: int, alphabet: str = LOWER_ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def new_organization_id() -> str:
    return "org-" + random_string(8)


def new_user_id() -> str:
    return "usr-" + random_string(10)


def new_token_id() -> str:
    return "tok-" + random_string(10)


def new_cluster_id() -> str:
    return "lkc-" + random_string(6)


def new_api_key() -> str:
    return random_string(16, UPPER_ALNUM)


def new_api_secret() -> str:
    return random_string(64, ALNUM)
