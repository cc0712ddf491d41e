"""Print a new Fernet key for BITRIX24_TOKEN_KEYS."""

from cryptography.fernet import Fernet
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Print a new key for BITRIX24_TOKEN_KEYS (prepend it to rotate, then run rotate_token_keys)."

    def handle(self, *args, **options):
        self.stdout.write(Fernet.generate_key().decode())
