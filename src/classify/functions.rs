//! Which names in a read call the server's own functions, and which a stored or loadable one.
//!
//! A `SELECT` that calls a stored function (`CREATE FUNCTION`) or a loadable one (`CREATE
//! FUNCTION ... SONAME`) may write: it goes to the primary, as MaxScale sends it. The
//! classifier cannot see a function's body, so it goes by the name: a name followed by `(` that
//! is none of the server's own functions and none of the keywords that come before a `(` is a
//! call of such a function. An unqualified name the server does not know as its own calls the
//! stored function of that name, so the lists are per server family: `NVL` is MariaDB's own,
//! and a MySQL 8 stored function named `nvl` is called by `SELECT nvl(a, b)`.
//!
//! The lists are hand-kept: no crate has them, and the server's own lists cover only some (its
//! `information_schema.SQL_FUNCTIONS` leaves out the functions that are keywords, `IF`, `LEFT`,
//! `DATE`, and the geometry ones). [`COMMON`] and [`MARIADB`] are MariaDB 10.11's
//! `information_schema.SQL_FUNCTIONS` and the function topics of its `mysql.help_topic`,
//! without the names 10.11 itself calls a stored function by (tests/routing.rs checks both
//! against the server: every name it lists is here, and no name here calls a stored function
//! there). [`MYSQL`] is MySQL 8.0's own from its function reference; MySQL is not run here.
//! Names only later versions have (MariaDB 11's `UUID_V7`, `VEC_*`) are in none: a read
//! calling one goes to the primary, slower but never wrong. While the family is not known,
//! only [`COMMON`] counts.

/// The server family the classifier reads for (`Flavor` of the backends' greeting).
pub use crate::monitor::replication::Flavor;

/// Functions both MariaDB 10.11 and MySQL 8.0 have, uppercase, sorted by bytes (binary search).
#[rustfmt::skip]
pub const COMMON: &[&str] = &[
    "ABS", "ACOS", "ADDDATE", "ADDTIME", "AES_DECRYPT", "AES_ENCRYPT", "ASCII", "ASIN", "ATAN",
    "ATAN2", "AVG", "BENCHMARK", "BIN", "BIT_AND", "BIT_COUNT", "BIT_LENGTH", "BIT_OR", "BIT_XOR",
    "CAST", "CEIL", "CEILING", "CHAR", "CHARACTER_LENGTH", "CHARSET", "CHAR_LENGTH", "COALESCE",
    "COERCIBILITY", "COLLATION", "COMPRESS", "CONCAT", "CONCAT_WS", "CONNECTION_ID", "CONV",
    "CONVERT", "CONVERT_TZ", "COS", "COT", "COUNT", "CRC32", "CUME_DIST", "CURDATE",
    "CURRENT_DATE", "CURRENT_ROLE", "CURRENT_TIME", "CURRENT_TIMESTAMP", "CURRENT_USER", "CURTIME",
    "DATABASE", "DATE", "DATEDIFF", "DATE_ADD", "DATE_FORMAT", "DATE_SUB", "DAY", "DAYNAME",
    "DAYOFMONTH", "DAYOFWEEK", "DAYOFYEAR", "DEFAULT", "DEGREES", "DENSE_RANK", "ELT", "EXISTS",
    "EXP", "EXPORT_SET", "EXTRACT", "EXTRACTVALUE", "FIELD", "FIND_IN_SET", "FIRST_VALUE", "FLOOR",
    "FORMAT", "FOUND_ROWS", "FROM_BASE64", "FROM_DAYS", "FROM_UNIXTIME", "GEOMETRYCOLLECTION",
    "GET_FORMAT", "GET_LOCK", "GREATEST", "GROUP_CONCAT", "HEX", "HOUR", "IF", "IFNULL",
    "INET6_ATON", "INET6_NTOA", "INET_ATON", "INET_NTOA", "INSERT", "INSTR", "INTERVAL", "ISNULL",
    "IS_FREE_LOCK", "IS_IPV4", "IS_IPV4_COMPAT", "IS_IPV4_MAPPED", "IS_IPV6", "IS_USED_LOCK",
    "JSON_ARRAY", "JSON_ARRAYAGG", "JSON_ARRAY_APPEND", "JSON_ARRAY_INSERT", "JSON_CONTAINS",
    "JSON_CONTAINS_PATH", "JSON_DEPTH", "JSON_EXTRACT", "JSON_INSERT", "JSON_KEYS", "JSON_LENGTH",
    "JSON_MERGE", "JSON_MERGE_PATCH", "JSON_MERGE_PRESERVE", "JSON_OBJECT", "JSON_OBJECTAGG",
    "JSON_OVERLAPS", "JSON_PRETTY", "JSON_QUOTE", "JSON_REMOVE", "JSON_REPLACE", "JSON_SEARCH",
    "JSON_SET", "JSON_TABLE", "JSON_TYPE", "JSON_UNQUOTE", "JSON_VALID", "JSON_VALUE", "LAG",
    "LAST_DAY", "LAST_INSERT_ID", "LAST_VALUE", "LCASE", "LEAD", "LEAST", "LEFT", "LENGTH",
    "LINESTRING", "LN", "LOAD_FILE", "LOCALTIME", "LOCALTIMESTAMP", "LOCATE", "LOG", "LOG10",
    "LOG2", "LOWER", "LPAD", "LTRIM", "MAKEDATE", "MAKETIME", "MAKE_SET", "MASTER_POS_WAIT",
    "MATCH", "MAX", "MBRCONTAINS", "MBRDISJOINT", "MBRINTERSECTS", "MBROVERLAPS", "MBRTOUCHES",
    "MBRWITHIN", "MD5", "MICROSECOND", "MID", "MIN", "MINUTE", "MOD", "MONTH", "MONTHNAME",
    "MULTILINESTRING", "MULTIPOINT", "MULTIPOLYGON", "NAME_CONST", "NOW", "NTH_VALUE", "NTILE",
    "NULLIF", "OCT", "OCTET_LENGTH", "ORD", "PERCENT_RANK", "PERIOD_ADD", "PERIOD_DIFF", "PI",
    "POINT", "POLYGON", "POSITION", "POW", "POWER", "QUARTER", "QUOTE", "RADIANS", "RAND",
    "RANDOM_BYTES", "RANK", "REGEXP_INSTR", "REGEXP_REPLACE", "REGEXP_SUBSTR", "RELEASE_ALL_LOCKS",
    "RELEASE_LOCK", "REPEAT", "REPLACE", "REVERSE", "RIGHT", "ROUND", "ROW", "ROW_COUNT",
    "ROW_NUMBER", "RPAD", "RTRIM", "SCHEMA", "SCHEMAS", "SECOND", "SEC_TO_TIME", "SESSION_USER",
    "SHA", "SHA1", "SHA2", "SIGN", "SIN", "SLEEP", "SOUNDEX", "SPACE", "SQRT", "STD", "STDDEV",
    "STDDEV_POP", "STDDEV_SAMP", "STRCMP", "STR_TO_DATE", "ST_AREA", "ST_ASBINARY", "ST_ASGEOJSON",
    "ST_ASTEXT", "ST_ASWKB", "ST_ASWKT", "ST_BUFFER", "ST_CENTROID", "ST_CONTAINS",
    "ST_CONVEXHULL", "ST_CROSSES", "ST_DIFFERENCE", "ST_DIMENSION", "ST_DISJOINT", "ST_DISTANCE",
    "ST_DISTANCE_SPHERE", "ST_ENDPOINT", "ST_ENVELOPE", "ST_EQUALS", "ST_EXTERIORRING",
    "ST_GEOMCOLLFROMTEXT", "ST_GEOMCOLLFROMWKB", "ST_GEOMETRYCOLLECTIONFROMTEXT",
    "ST_GEOMETRYCOLLECTIONFROMWKB", "ST_GEOMETRYFROMTEXT", "ST_GEOMETRYFROMWKB", "ST_GEOMETRYN",
    "ST_GEOMETRYTYPE", "ST_GEOMFROMGEOJSON", "ST_GEOMFROMTEXT", "ST_GEOMFROMWKB",
    "ST_INTERIORRINGN", "ST_INTERSECTION", "ST_INTERSECTS", "ST_ISCLOSED", "ST_ISEMPTY",
    "ST_ISRING", "ST_ISSIMPLE", "ST_LENGTH", "ST_LINEFROMTEXT", "ST_LINEFROMWKB",
    "ST_LINESTRINGFROMTEXT", "ST_LINESTRINGFROMWKB", "ST_MLINEFROMTEXT", "ST_MPOINTFROMTEXT",
    "ST_MPOINTFROMWKB", "ST_MPOLYFROMTEXT", "ST_MPOLYFROMWKB", "ST_MULTILINESTRINGFROMTEXT",
    "ST_MULTIPOINTFROMTEXT", "ST_MULTIPOINTFROMWKB", "ST_MULTIPOLYGONFROMTEXT",
    "ST_MULTIPOLYGONFROMWKB", "ST_NUMGEOMETRIES", "ST_NUMINTERIORRINGS", "ST_NUMPOINTS",
    "ST_OVERLAPS", "ST_POINTFROMTEXT", "ST_POINTFROMWKB", "ST_POINTN", "ST_POLYFROMTEXT",
    "ST_POLYFROMWKB", "ST_POLYGONFROMTEXT", "ST_POLYGONFROMWKB", "ST_SRID", "ST_STARTPOINT",
    "ST_SYMDIFFERENCE", "ST_TOUCHES", "ST_UNION", "ST_WITHIN", "ST_X", "ST_Y", "SUBDATE", "SUBSTR",
    "SUBSTRING", "SUBSTRING_INDEX", "SUBTIME", "SUM", "SYSDATE", "SYSTEM_USER", "TAN", "TIME",
    "TIMEDIFF", "TIMESTAMP", "TIMESTAMPADD", "TIMESTAMPDIFF", "TIME_FORMAT", "TIME_TO_SEC",
    "TO_BASE64", "TO_DAYS", "TO_SECONDS", "TRIM", "TRUNCATE", "UCASE", "UNCOMPRESS",
    "UNCOMPRESSED_LENGTH", "UNHEX", "UNIX_TIMESTAMP", "UPDATEXML", "UPPER", "USER", "UTC_DATE",
    "UTC_TIME", "UTC_TIMESTAMP", "UUID", "UUID_SHORT", "VALUES", "VARIANCE", "VAR_POP", "VAR_SAMP",
    "VERSION", "WEEK", "WEEKDAY", "WEEKOFYEAR", "WEIGHT_STRING", "YEAR", "YEARWEEK",
];

/// Functions MariaDB 10.11 has and MySQL 8.0 does not (Oracle mode's, dynamic columns, the
/// geometry names without `ST_` that MySQL 8.0 removed, ...). Uppercase, sorted by bytes.
#[rustfmt::skip]
pub const MARIADB: &[&str] = &[
    "ADD_MONTHS", "AREA", "ASBINARY", "ASTEXT", "ASWKB", "ASWKT", "BINLOG_GTID_POS", "BOUNDARY",
    "BUFFER", "CENTROID", "CHR", "COLUMN_ADD", "COLUMN_CHECK", "COLUMN_CREATE", "COLUMN_DELETE",
    "COLUMN_EXISTS", "COLUMN_GET", "COLUMN_JSON", "COLUMN_LIST", "CONCAT_OPERATOR_ORACLE",
    "CONTAINS", "CONVEXHULL", "CRC32C", "CROSSES", "DECODE", "DECODE_HISTOGRAM", "DECODE_ORACLE",
    "DES_DECRYPT", "DES_ENCRYPT", "DIMENSION", "DISJOINT", "ENCODE", "ENCRYPT", "ENDPOINT",
    "ENVELOPE", "EQUALS", "EXTERIORRING", "GEOMCOLLFROMTEXT", "GEOMCOLLFROMWKB",
    "GEOMETRYCOLLECTIONFROMTEXT", "GEOMETRYCOLLECTIONFROMWKB", "GEOMETRYFROMTEXT",
    "GEOMETRYFROMWKB", "GEOMETRYN", "GEOMETRYTYPE", "GEOMFROMTEXT", "GEOMFROMWKB", "GLENGTH",
    "INTERIORRINGN", "INTERSECTS", "ISCLOSED", "ISEMPTY", "ISRING", "ISSIMPLE", "JSON_COMPACT",
    "JSON_DETAILED", "JSON_EQUALS", "JSON_EXISTS", "JSON_LOOSE", "JSON_NORMALIZE", "JSON_QUERY",
    "LENGTHB", "LINEFROMTEXT", "LINEFROMWKB", "LINESTRINGFROMTEXT", "LINESTRINGFROMWKB",
    "LPAD_ORACLE", "LTRIM_ORACLE", "MASTER_GTID_WAIT", "MBREQUAL", "MEDIAN", "MLINEFROMTEXT",
    "MLINEFROMWKB", "MPOINTFROMTEXT", "MPOINTFROMWKB", "MPOLYFROMTEXT", "MPOLYFROMWKB",
    "MULTILINESTRINGFROMTEXT", "MULTILINESTRINGFROMWKB", "MULTIPOINTFROMTEXT", "MULTIPOINTFROMWKB",
    "MULTIPOLYGONFROMTEXT", "MULTIPOLYGONFROMWKB", "NATURAL_SORT_KEY", "NUMGEOMETRIES",
    "NUMINTERIORRINGS", "NUMPOINTS", "NVL", "NVL2", "OLD_PASSWORD", "OVERLAPS", "PASSWORD",
    "PERCENTILE_CONT", "PERCENTILE_DISC", "POINTFROMTEXT", "POINTFROMWKB", "POINTN",
    "POINTONSURFACE", "POLYFROMTEXT", "POLYFROMWKB", "POLYGONFROMTEXT", "POLYGONFROMWKB",
    "REPLACE_ORACLE", "ROWNUM", "RPAD_ORACLE", "RTRIM_ORACLE", "SFORMAT", "SRID", "STARTPOINT",
    "ST_BOUNDARY", "ST_POINTONSURFACE", "ST_RELATE", "SUBSTR_ORACLE", "SYS_GUID", "TOUCHES",
    "TO_CHAR", "TRIM_ORACLE", "VALUE", "WITHIN", "WSREP_LAST_SEEN_GTID", "WSREP_LAST_WRITTEN_GTID",
    "WSREP_SYNC_WAIT_UPTO_GTID", "X", "Y",
];

/// Functions MySQL 8.0 has and MariaDB 10.11 does not. Uppercase, sorted by bytes.
#[rustfmt::skip]
pub const MYSQL: &[&str] = &[
    "ANY_VALUE", "BIN_TO_UUID", "FORMAT_BYTES", "FORMAT_PICO_TIME", "GEOMCOLLECTION", "GROUPING",
    "GTID_SUBSET", "GTID_SUBTRACT", "ICU_VERSION", "IS_UUID", "JSON_SCHEMA_VALID",
    "JSON_SCHEMA_VALIDATION_REPORT", "JSON_STORAGE_FREE", "JSON_STORAGE_SIZE", "MBRCOVEREDBY",
    "MBRCOVERS", "MBREQUALS", "PS_CURRENT_THREAD_ID", "PS_THREAD_ID", "REGEXP_LIKE",
    "ROLES_GRAPHML", "SOURCE_POS_WAIT", "STATEMENT_DIGEST", "STATEMENT_DIGEST_TEXT",
    "ST_BUFFER_STRATEGY", "ST_COLLECT", "ST_FRECHETDISTANCE", "ST_GEOHASH", "ST_GEOMCOLLFROMTXT",
    "ST_HAUSDORFFDISTANCE", "ST_ISVALID", "ST_LATFROMGEOHASH", "ST_LATITUDE",
    "ST_LINEINTERPOLATEPOINT", "ST_LINEINTERPOLATEPOINTS", "ST_LONGFROMGEOHASH", "ST_LONGITUDE",
    "ST_MAKEENVELOPE", "ST_MLINEFROMWKB", "ST_MULTILINESTRINGFROMWKB", "ST_NUMINTERIORRING",
    "ST_POINTATDISTANCE", "ST_POINTFROMGEOHASH", "ST_SIMPLIFY", "ST_SWAPXY", "ST_TRANSFORM",
    "ST_VALIDATE", "UUID_TO_BIN", "VALIDATE_PASSWORD_STRENGTH", "WAIT_FOR_EXECUTED_GTID_SET",
    "WAIT_UNTIL_SQL_THREAD_AFTER_GTIDS",
];

/// Reserved words that come before a `(` in a read without calling anything: operators,
/// clauses, index hints, `CAST`/`CONVERT` and `JSON_TABLE` types, `SELECT` options. Words a
/// stored function may be named by (`AGAINST`, `COLUMNS`, `OF`) are told by what comes before
/// them (`read_or_write`). Uppercase, sorted by bytes.
#[rustfmt::skip]
pub const KEYWORDS: &[&str] = &[
    "ALL", "AND", "ANY", "AS", "ASC", "BETWEEN", "BIGINT", "BINARY", "BIT", "BLOB", "BY", "CASE",
    "CHARACTER", "DATETIME", "DEC", "DECIMAL", "DESC", "DISTINCT", "DISTINCTROW", "DIV", "DOUBLE",
    "ELSE", "ENUM", "EXCEPT", "FIXED", "FLOAT", "FOR", "FROM", "GROUP", "HAVING", "HIGH_PRIORITY",
    "IN", "INDEX", "INT", "INTEGER", "INTERSECT", "INTO", "IS", "JOIN", "JSON", "KEY", "LIKE",
    "LIMIT", "MEDIUMINT", "NCHAR", "NOT", "NUMERIC", "NVARCHAR", "OFFSET", "ON", "OR", "ORDER",
    "OVER", "PARTITION", "REAL", "RECURSIVE", "REGEXP", "RETURNING", "RLIKE", "SELECT",
    "SEPARATOR", "SIGNED", "SMALLINT", "SOME", "SQL_BIG_RESULT", "SQL_BUFFER_RESULT", "SQL_CACHE",
    "SQL_NO_CACHE", "SQL_SMALL_RESULT", "STRAIGHT_JOIN", "TEXT", "THEN", "TINYINT", "UNION",
    "UNSIGNED", "USING", "VARBINARY", "VARCHAR", "VARCHAR2", "WHEN", "WHERE", "WINDOW", "WITH",
    "XOR",
];

/// Names no longer than this are looked up; a longer one is no function of the server's.
pub(super) const LONGEST: usize = 40;

/// Whether `name` (a word followed by `(`) is one of the server's functions or a keyword, not
/// a call of a stored or loadable function, on a server of family `flavor` (`None`: not known
/// yet, only the names both families have count).
pub fn is_servers(name: &[u8], flavor: Option<Flavor>) -> bool {
    let mut upper = [0u8; LONGEST];
    let Some(u) = upper.get_mut(..name.len()) else {
        return false;
    };
    u.copy_from_slice(name);
    u.make_ascii_uppercase();
    let u: &[u8] = u;
    let found = |list: &[&str]| list.binary_search_by(|n| n.as_bytes().cmp(u)).is_ok();
    found(COMMON)
        || found(KEYWORDS)
        || match flavor {
            Some(Flavor::MariaDb) => found(MARIADB),
            Some(Flavor::MySql) => found(MYSQL),
            None => false,
        }
}
