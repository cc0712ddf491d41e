"""The Bitrix24 wire protocol, free of Django.

Everything that speaks HTTP to a portal or to the OAuth server lives here; the rest of the
project reaches Bitrix24 only through this package.
"""
