"""The Hugging Face access token in the OS keychain (``keyring``), never in a plain file."""

from __future__ import annotations

from models.hub.hub_errors import TokenStoreError

KEYRING_SERVICE = "Llama Desk"
KEYRING_USER = "huggingface-token"

_NO_KEYCHAIN = (
    "No system keychain is available to store the Hugging Face token ({reason}); "
    "set the HF_TOKEN environment variable instead."
)


def set_token(token: str) -> None:
    """Store the Hugging Face access token in the OS keychain."""
    import keyring
    from keyring.errors import KeyringError

    token = token.strip()
    if not token:
        raise TokenStoreError("The token is empty.")
    try:
        keyring.set_password(KEYRING_SERVICE, KEYRING_USER, token)
    except KeyringError as exc:
        raise TokenStoreError(_NO_KEYCHAIN.format(reason=str(exc) or type(exc).__name__)) from None


def get_token() -> str | None:
    """The token stored in the OS keychain, or None (also when there is no keychain)."""
    try:
        import keyring
        from keyring.errors import KeyringError
    except ImportError:  # pragma: no cover - keyring is a dependency
        return None
    try:
        return keyring.get_password(KEYRING_SERVICE, KEYRING_USER) or None
    except KeyringError:
        return None


def clear_token() -> None:
    """Remove the stored token (nothing happens when there is none)."""
    import keyring
    from keyring.errors import KeyringError, PasswordDeleteError

    try:
        keyring.delete_password(KEYRING_SERVICE, KEYRING_USER)
    except PasswordDeleteError:
        return
    except KeyringError as exc:
        raise TokenStoreError(_NO_KEYCHAIN.format(reason=str(exc) or type(exc).__name__)) from None


def request_token(token: str | None) -> str | None:
    """The token for Hub calls: the given one, the keychain's, else None (huggingface_hub's lookup)."""
    return token or get_token()
