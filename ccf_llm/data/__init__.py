"""Data sources, all producing :class:`CTRData` in one row format (see :mod:`ccf_llm.data.schema`)."""

from .amazon import process_amazon_book
from .movielens import process_movielens, read_movielens
from .recbole_default import RECBOLE_INSTALL, load_default, recbole_ml100k_dir
from .schema import ROW_COLUMNS, SPLITS, CTRData, DataError, load_split
from .sources import SHARED_ML1M, SOURCES, load_named, load_source, source_options

__all__ = [
    "RECBOLE_INSTALL",
    "ROW_COLUMNS",
    "SHARED_ML1M",
    "SOURCES",
    "SPLITS",
    "CTRData",
    "DataError",
    "load_default",
    "load_named",
    "load_source",
    "load_split",
    "process_amazon_book",
    "process_movielens",
    "read_movielens",
    "recbole_ml100k_dir",
    "source_options",
]
