from __future__ import annotations

from typing import Any

from django.db import models

from . import crypto


class EncryptedTextField(models.TextField):
    """A text column stored encrypted (see portals.crypto); Python code sees plain text.

    Never filter on it: the ciphertext differs on every write.
    """

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> str:
        if value is None:
            return ""
        return crypto.decrypt(value)

    def get_prep_value(self, value: Any) -> str:
        value = super().get_prep_value(value)
        return crypto.encrypt(value or "")
