"""Sources of A-share market data behind one port (`MarketDataProvider`): Tushare Pro, the demo market, and files.

Every provider returns Tushare's own layouts and units; the storage layer converts them (services/data/loader.py).
"""

from services.data.providers.demo import DemoProvider
from services.data.providers.errors import (
    AuthenticationError,
    DataNotReady,
    PermissionDenied,
    ProviderDataError,
    ProviderError,
    ProviderRequestError,
    ProviderUnavailable,
    RateLimited,
)
from services.data.providers.files import (
    FileImportError,
    FileIssue,
    FilesImportError,
    read_daily_file,
    read_daily_files,
)
from services.data.providers.port import API_SCHEMAS, LIST_STATUSES, ApiSchema, DateLike, MarketDataProvider, ymd
from services.data.providers.ratelimit import RateLimiter, RetryPolicy
from services.data.providers.tushare import TushareConfig, TushareProvider

__all__ = [
    "API_SCHEMAS",
    "LIST_STATUSES",
    "ApiSchema",
    "AuthenticationError",
    "DataNotReady",
    "DateLike",
    "DemoProvider",
    "FileImportError",
    "FileIssue",
    "FilesImportError",
    "MarketDataProvider",
    "PermissionDenied",
    "ProviderDataError",
    "ProviderError",
    "ProviderRequestError",
    "ProviderUnavailable",
    "RateLimited",
    "RateLimiter",
    "RetryPolicy",
    "TushareConfig",
    "TushareProvider",
    "read_daily_file",
    "read_daily_files",
    "ymd",
]
