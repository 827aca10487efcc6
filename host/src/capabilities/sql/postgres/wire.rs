//! The pure translations between the guest's terms and PostgreSQL's:
//! schema names, placeholders, values both ways, and errors.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::time::Duration;

use tokio_postgres::types::{FromSql, IsNull, Kind, ToSql, Type, to_sql_checked};

use super::super::{SqlError, Value};

/// PostgreSQL's longest identifier, in bytes.
const MAX_IDENTIFIER: usize = 63;

/// The schema (and role) of `namespace`: `c_shop` for served `shop`,
/// `t_acme__shop` for tenant `acme`'s `shop`. Names that are not DNS
/// labels, or too long, become `h_PREFIX_HASH`: unique all the same.
pub fn schema_name(namespace: &str) -> String {
    let label = |part: &str| {
        !part.is_empty()
            && !part.contains("--")
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    let simple = match namespace.split_once('/') {
        None if label(namespace) => Some(format!("c_{}", namespace.replace('-', "_"))),
        Some((tenant, name)) if label(tenant) && label(name) => Some(format!(
            "t_{}__{}",
            tenant.replace('-', "_"),
            name.replace('-', "_")
        )),
        _ => None,
    };
    if let Some(name) = simple.filter(|name| name.len() <= MAX_IDENTIFIER) {
        return name;
    }
    let hash = blake3::hash(namespace.as_bytes()).to_hex();
    let readable: String = namespace
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .take(MAX_IDENTIFIER - 2 - 1 - 16)
        .collect();
    format!("h_{readable}_{}", &hash[..16])
}

/// `name`, quoted as an identifier.
pub fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The statement with SQLite's placeholders (`?`, `?N`) as PostgreSQL's
/// (`$N`); `$N` stay as they are. Strings, quoted identifiers, comments
/// and dollar-quoted bodies are left alone. A bare `?` takes the number
/// after the largest seen so far, as in SQLite.
pub fn numbered_placeholders(sql: &str) -> Cow<'_, str> {
    if !sql.contains('?') {
        return Cow::Borrowed(sql);
    }
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 8);
    let mut largest = 0u32;
    let mut i = 0;
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80;
    while i < bytes.len() {
        let start = i;
        match bytes[i] {
            b'\'' => {
                // E'...' strings escape with a backslash; others double the quote.
                let escapes = i > 0
                    && bytes[i - 1].eq_ignore_ascii_case(&b'e')
                    && (i < 2 || !word(bytes[i - 2]));
                i += 1;
                while i < bytes.len() {
                    match bytes[i] {
                        b'\\' if escapes => i += 2,
                        b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 2,
                        b'\'' => {
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
            }
            b'"' => {
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == b'"' {
                        if bytes.get(i + 1) == Some(&b'"') {
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    i += 1;
                }
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < bytes.len() {
                    if bytes[i..].starts_with(b"/*") {
                        depth += 1;
                        i += 2;
                    } else if bytes[i..].starts_with(b"*/") {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'$' if i == 0 || !word(bytes[i - 1]) => {
                let digits = bytes[i + 1..].iter().take_while(|b| b.is_ascii_digit());
                let digits = digits.count();
                if digits > 0 {
                    if let Ok(n) = sql[i + 1..i + 1 + digits].parse::<u32>() {
                        largest = largest.max(n);
                    }
                    i += 1 + digits;
                } else {
                    let tag_len = bytes[i + 1..].iter().take_while(|&&b| word(b)).count();
                    let closing = i + 1 + tag_len;
                    if bytes.get(closing) == Some(&b'$') {
                        let tag = &sql[i..=closing];
                        i = closing + 1;
                        i = sql[i..]
                            .find(tag)
                            .map_or(bytes.len(), |at| i + at + tag.len());
                    } else {
                        i += 1;
                    }
                }
            }
            b'?' => {
                let digits = bytes[i + 1..].iter().take_while(|b| b.is_ascii_digit());
                let digits = digits.count();
                let n = match sql[i + 1..i + 1 + digits].parse::<u32>() {
                    Ok(n) => n,
                    Err(_) => largest + 1,
                };
                largest = largest.max(n);
                out.push('$');
                out.push_str(&n.to_string());
                i += 1 + digits;
                continue;
            }
            _ => i += 1,
        }
        out.push_str(&sql[start..i.min(bytes.len())]);
    }
    Cow::Owned(out)
}

/// Whether the statement only frees space (`DELETE`, `TRUNCATE`, `DROP`,
/// `VACUUM`): let through when the schema is at its size quota.
pub fn frees_space(sql: &str) -> bool {
    let mut rest = sql.trim_start();
    loop {
        if let Some(line) = rest.strip_prefix("--") {
            rest = line
                .split_once('\n')
                .map_or("", |(_, after)| after)
                .trim_start();
        } else if let Some(block) = rest.strip_prefix("/*") {
            rest = block
                .split_once("*/")
                .map_or("", |(_, after)| after)
                .trim_start();
        } else {
            break;
        }
    }
    let word: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
    ["delete", "truncate", "drop", "vacuum"]
        .iter()
        .any(|freeing| word.eq_ignore_ascii_case(freeing))
}

/// Whether a guest's statement might leave a transaction block open on its
/// connection: `BEGIN` or `START TRANSACTION`, or anything that does not
/// plainly start with another keyword (a comment, say). Only those
/// top-level commands open one; functions and procedures cannot (PL/pgSQL
/// refuses `BEGIN`), and a failed statement's implicit transaction ends
/// with it.
pub fn may_open_transaction(sql: &str) -> bool {
    let rest = sql.trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    let word = &rest[..end];
    word.is_empty() || word.eq_ignore_ascii_case("begin") || word.eq_ignore_ascii_case("start")
}

/// A guest's value, as a parameter of the type PostgreSQL inferred.
#[derive(Debug)]
pub struct Param<'a>(pub &'a Value);

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        let text_like = |ty: &Type| {
            matches!(
                *ty,
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN
            ) || matches!(ty.kind(), Kind::Enum(_))
                || ty.name() == "citext"
        };
        match (self.0, ty) {
            (Value::Null, _) => return Ok(IsNull::Yes),
            (Value::Integer(i), &Type::INT8) => out.extend_from_slice(&i.to_be_bytes()),
            (Value::Integer(i), &Type::INT4) => {
                out.extend_from_slice(&i32::try_from(*i)?.to_be_bytes())
            }
            (Value::Integer(i), &Type::INT2) => {
                out.extend_from_slice(&i16::try_from(*i)?.to_be_bytes())
            }
            (Value::Integer(i), &Type::OID) => {
                out.extend_from_slice(&u32::try_from(*i)?.to_be_bytes())
            }
            (Value::Integer(i), &Type::BOOL) => out.extend_from_slice(&[u8::from(*i != 0)]),
            (Value::Integer(i), &Type::FLOAT8) => out.extend_from_slice(&(*i as f64).to_be_bytes()),
            (Value::Integer(i), &Type::FLOAT4) => out.extend_from_slice(&(*i as f32).to_be_bytes()),
            (Value::Real(r), &Type::FLOAT8) => out.extend_from_slice(&r.to_be_bytes()),
            (Value::Real(r), &Type::FLOAT4) => out.extend_from_slice(&(*r as f32).to_be_bytes()),
            (Value::Integer(i), ty) if text_like(ty) => {
                out.extend_from_slice(i.to_string().as_bytes())
            }
            (Value::Real(r), ty) if text_like(ty) => {
                out.extend_from_slice(r.to_string().as_bytes())
            }
            (Value::Text(t) | Value::Json(t), ty) if text_like(ty) || *ty == Type::JSON => {
                out.extend_from_slice(t.as_bytes())
            }
            (Value::Text(t) | Value::Json(t), &Type::JSONB) => {
                out.extend_from_slice(&[1]);
                out.extend_from_slice(t.as_bytes());
            }
            (Value::Blob(b), &Type::BYTEA) => out.extend_from_slice(b),
            (value, ty) => {
                let kind = match value {
                    Value::Integer(_) => "integer",
                    Value::Real(_) => "real",
                    Value::Text(_) => "text",
                    Value::Json(_) => "json",
                    _ => "blob",
                };
                return Err(format!(
                    "a {kind} value cannot stand for a parameter of type {ty}: \
                     convert it in the statement, as CAST($1::text AS {ty})"
                )
                .into());
            }
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// One value of a row, in the guest's terms.
pub struct Cell(pub Value);

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        let text = |raw: &[u8]| String::from_utf8_lossy(raw).into_owned();
        let value = match *ty {
            Type::BOOL => Value::Integer(i64::from(raw.first() == Some(&1))),
            Type::INT2 => Value::Integer(i16::from_be_bytes(raw.try_into()?).into()),
            Type::INT4 => Value::Integer(i32::from_be_bytes(raw.try_into()?).into()),
            Type::INT8 => Value::Integer(i64::from_be_bytes(raw.try_into()?)),
            Type::OID => Value::Integer(u32::from_be_bytes(raw.try_into()?).into()),
            Type::FLOAT4 => Value::Real(f32::from_be_bytes(raw.try_into()?).into()),
            Type::FLOAT8 => Value::Real(f64::from_be_bytes(raw.try_into()?)),
            Type::JSON => Value::Json(text(raw)),
            Type::JSONB => Value::Json(text(raw.get(1..).unwrap_or_default())),
            Type::BYTEA => Value::Blob(raw.to_vec()),
            Type::NUMERIC => Value::Text(numeric(raw)?),
            Type::UUID => Value::Text(uuid(raw)?),
            Type::DATE => Value::Text(date(i32::from_be_bytes(raw.try_into()?).into())),
            Type::TIMESTAMP => Value::Text(timestamp(i64::from_be_bytes(raw.try_into()?))),
            Type::TIMESTAMPTZ => {
                Value::Text(timestamp(i64::from_be_bytes(raw.try_into()?)) + "+00")
            }
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::CHAR => {
                Value::Text(text(raw))
            }
            _ if matches!(ty.kind(), Kind::Enum(_)) || ty.name() == "citext" => {
                Value::Text(text(raw))
            }
            _ => {
                return Err(format!(
                    "a column of type {ty} cannot be returned: cast it in the statement, as col::text"
                )
                .into());
            }
        };
        Ok(Cell(value))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(Cell(Value::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// A `numeric` in its binary form, as decimal text.
fn numeric(raw: &[u8]) -> Result<String, Box<dyn StdError + Sync + Send>> {
    let word = |i: usize| -> Result<i16, Box<dyn StdError + Sync + Send>> {
        let bytes = raw
            .get(i * 2..i * 2 + 2)
            .ok_or("a numeric value is cut short")?;
        Ok(i16::from_be_bytes([bytes[0], bytes[1]]))
    };
    let (count, weight, sign, scale) = (word(0)?, word(1)?, word(2)? as u16, word(3)?);
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let digits: Vec<i16> = (0..count as usize)
        .map(|i| word(4 + i))
        .collect::<Result<_, _>>()?;
    let digit = |position: i32| -> i16 {
        usize::try_from(position)
            .ok()
            .and_then(|p| digits.get(p))
            .copied()
            .unwrap_or(0)
    };
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    }
    for position in 0..=i32::from(weight) {
        let group = digit(position);
        if position == 0 {
            out.push_str(&group.to_string());
        } else {
            out.push_str(&format!("{group:04}"));
        }
    }
    if scale > 0 {
        out.push('.');
        let mut fraction = String::new();
        let mut position = i32::from(weight) + 1;
        while fraction.len() < scale as usize {
            fraction.push_str(&format!("{:04}", digit(position)));
            position += 1;
        }
        fraction.truncate(scale as usize);
        out.push_str(&fraction);
    }
    Ok(out)
}

fn uuid(raw: &[u8]) -> Result<String, Box<dyn StdError + Sync + Send>> {
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    if hex.len() != 32 {
        return Err("a uuid is 16 bytes".into());
    }
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

/// Days since 2000-01-01 as `YYYY-MM-DD` (Howard Hinnant's civil date).
fn date(days: i64) -> String {
    match days {
        i64::MAX | 0x7FFF_FFFF => return "infinity".into(),
        i64::MIN | -0x8000_0000 => return "-infinity".into(),
        _ => {}
    }
    let z = days + 10_957 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Microseconds since 2000-01-01 00:00 as `YYYY-MM-DD HH:MM:SS[.ffffff]`.
fn timestamp(micros: i64) -> String {
    if micros == i64::MAX || micros == i64::MIN {
        return date(micros);
    }
    let (days, rest) = (
        micros.div_euclid(86_400_000_000),
        micros.rem_euclid(86_400_000_000),
    );
    let (seconds, fraction) = (rest / 1_000_000, rest % 1_000_000);
    let time = format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    );
    let fraction = if fraction == 0 {
        String::new()
    } else {
        format!(".{fraction:06}")
    };
    format!("{} {time}{fraction}", date(days))
}

/// A PostgreSQL error, in the guest's terms; `limit` is the time limit
/// the statement ran under.
pub fn sql_error(error: &tokio_postgres::Error, limit: Duration) -> SqlError {
    let Some(db) = error.as_db_error() else {
        return match error.source() {
            // A parameter that would not convert.
            Some(cause) if !error.is_closed() && cause.to_string().contains("parameter") => {
                SqlError::Invalid(cause.to_string())
            }
            Some(cause) if !error.is_closed() && cause.to_string().contains("cannot") => {
                SqlError::Invalid(cause.to_string())
            }
            _ => unreachable_database(error),
        };
    };
    let mut message = db.message().to_string();
    if let Some(detail) = db.detail() {
        message = format!("{message} ({detail})");
    }
    by_code(db.code().code(), message, limit)
}

/// An error of SQLSTATE `code`, in the guest's terms.
fn by_code(code: &str, message: String, limit: Duration) -> SqlError {
    match code {
        "57014" => SqlError::Timeout(format!(
            "the statement ran past the time limit of {} ms",
            limit.as_millis()
        )),
        "25006" | "53100" => SqlError::Quota(format!(
            "the database is at its size quota: delete rows before writing more ({message})"
        )),
        "42501" => SqlError::Invalid(format!(
            "{message}: a component reaches only its own schema"
        )),
        _ if code.starts_with("23") => SqlError::Constraint(message),
        _ if ["08", "53", "57", "58", "XX", "40"]
            .iter()
            .any(|class| code.starts_with(class)) =>
        {
            failed(format!("{code}: {message}"))
        }
        _ => SqlError::Invalid(message),
    }
}

/// PostgreSQL could not be reached, or dropped the connection.
pub fn unreachable_database(error: impl std::fmt::Display) -> SqlError {
    failed(format!("PostgreSQL is unreachable: {error}"))
}

/// A failure of the database itself: logged in full, named to the guest.
pub fn failed(error: impl std::fmt::Display) -> SqlError {
    tracing::error!("SQL database error: {error}");
    SqlError::Failed(format!("the database failed: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_begin_or_a_statement_of_unclear_start_may_open_a_transaction() {
        for opening in [
            "BEGIN",
            " begin;",
            "\nSTART TRANSACTION",
            "/* x */ BEGIN",
            "",
            "(SELECT 1)",
        ] {
            assert!(may_open_transaction(opening), "{opening:?}");
        }
        for plain in [
            "SELECT 1",
            "insert into t values (1)",
            "COMMIT",
            "CALL p()",
            "DO $$ BEGIN END $$",
        ] {
            assert!(!may_open_transaction(plain), "{plain:?}");
        }
    }

    #[test]
    fn namespaces_become_distinct_safe_schema_names() {
        assert_eq!(schema_name("shop"), "c_shop");
        assert_eq!(schema_name("acme/my-shop"), "t_acme__my_shop");
        // `--` would make `__` ambiguous: such names are hashed instead.
        let (a, b) = (schema_name("a--b/c"), schema_name("a/b--c"));
        assert_ne!(a, b);
        assert!(a.starts_with("h_a__b_c_"), "{a}");
        for odd in [
            "Shop \"x\"; DROP",
            &"x".repeat(100),
            "acme/".repeat(20).as_str(),
        ] {
            let name = schema_name(odd);
            assert!(name.len() <= MAX_IDENTIFIER, "{name}");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{name}"
            );
        }
        assert_eq!(quoted("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn question_marks_become_numbered_outside_strings_and_comments() {
        let n = |sql: &str| numbered_placeholders(sql).into_owned();
        assert_eq!(n("SELECT ?, ?"), "SELECT $1, $2");
        assert_eq!(n("SELECT ?2, ?1, ?"), "SELECT $2, $1, $3");
        assert_eq!(n("SELECT $1, ?"), "SELECT $1, $2");
        assert_eq!(
            n("SELECT '?', \"a?\", ? -- ?\n"),
            "SELECT '?', \"a?\", $1 -- ?\n"
        );
        assert_eq!(n("SELECT 'it''s ?', ?"), "SELECT 'it''s ?', $1");
        assert_eq!(n("SELECT E'\\' ?', ?"), "SELECT E'\\' ?', $1");
        assert_eq!(
            n("SELECT /* ? /* ? */ ? */ ?"),
            "SELECT /* ? /* ? */ ? */ $1"
        );
        assert_eq!(
            n("DO $body$ SELECT ? $body$; SELECT ?"),
            "DO $body$ SELECT ? $body$; SELECT $1"
        );
        assert_eq!(n("SELECT $$?$$, ?"), "SELECT $$?$$, $1");
        assert!(matches!(
            numbered_placeholders("SELECT 1"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn sqlstates_map_to_the_error_kinds_guests_branch_on() {
        let kind = |code: &str| match by_code(code, "m".into(), Duration::from_millis(300)) {
            SqlError::Constraint(_) => "constraint",
            SqlError::Timeout(m) if m.contains("300 ms") => "timeout",
            SqlError::Quota(m) if m.contains("size quota") => "quota",
            SqlError::Invalid(_) => "invalid",
            SqlError::Failed(_) => "failed",
            other => panic!("{other:?}"),
        };
        assert_eq!(kind("23505"), "constraint");
        assert_eq!(kind("23514"), "constraint");
        assert_eq!(kind("57014"), "timeout");
        assert_eq!(kind("25006"), "quota");
        assert_eq!(kind("42601"), "invalid");
        assert_eq!(kind("42501"), "invalid");
        assert_eq!(kind("22P02"), "invalid");
        assert_eq!(kind("08006"), "failed");
        assert_eq!(kind("57P01"), "failed");
    }

    #[test]
    fn only_statements_that_free_space_pass_the_size_quota() {
        assert!(frees_space("  -- old rows\n/* all */ DELETE FROM t"));
        assert!(frees_space("truncate t"));
        assert!(!frees_space(
            "WITH gone AS (DELETE FROM t) INSERT INTO u VALUES (1)"
        ));
        assert!(!frees_space("INSERT INTO t VALUES (1)"));
    }

    #[test]
    fn numerics_dates_and_uuids_read_as_text() {
        // 12345.678: groups 1, 2345, 6780; weight 1; scale 3.
        let raw: Vec<u8> = [3i16, 1, 0, 3, 1, 2345, 6780]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect();
        assert_eq!(numeric(&raw).unwrap(), "12345.678");
        // -0.05: group 500 at weight -1, scale 2.
        let raw: Vec<u8> = [1i16, -1, 0x4000u16 as i16, 2, 500]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect();
        assert_eq!(numeric(&raw).unwrap(), "-0.05");
        assert_eq!(date(0), "2000-01-01");
        assert_eq!(date(-1), "1999-12-31");
        assert_eq!(
            timestamp(86_400_000_000 + 3_723_000_001),
            "2000-01-02 01:02:03.000001"
        );
        assert_eq!(
            uuid(&[0xab; 16]).unwrap(),
            "abababab-abab-abab-abab-abababababab"
        );
    }

    #[test]
    fn values_convert_to_the_inferred_parameter_type_or_say_how() {
        let mut out = bytes::BytesMut::new();
        Param(&Value::Integer(1))
            .to_sql(&Type::BOOL, &mut out)
            .unwrap();
        Param(&Value::Integer(7))
            .to_sql(&Type::INT4, &mut out)
            .unwrap();
        Param(&Value::Json("{}".into()))
            .to_sql(&Type::JSONB, &mut out)
            .unwrap();
        assert_eq!(&out[..], [1, 0, 0, 0, 7, 1, b'{', b'}']);
        let refused = Param(&Value::Text("x".into())).to_sql(&Type::TIMESTAMP, &mut out);
        let Err(refused) = refused else {
            panic!("a text value became a timestamp")
        };
        assert!(refused.to_string().contains("CAST($1::text AS timestamp)"));
        assert!(
            Param(&Value::Integer(1 << 40))
                .to_sql(&Type::INT4, &mut out)
                .is_err()
        );
    }
}
