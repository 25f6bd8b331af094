from prometheus_client import Counter

LOGINS = Counter(
    "pingtower_identity_logins_total",
    "Login attempts of the built-in login: success, invalid (wrong credentials), throttled.",
    ["outcome"],
)
