//! The room's persistence: one SQLite file, [`DB_FILE_NAME`] in the data directory, holding the
//! users ([`UserRecord`]), the chat messages ([`MessageRecord`], with their hidden flag) and a
//! small key/value table of settings (the room's secret key, the broadcaster's token id, the
//! title, ...).
//!
//! Owns: the schema and its version, the exclusive lock on the file for the life of a [`Db`],
//! and durability: when a write method returns `Ok`, the row survives `kill -9` and power loss
//! (WAL journal, `synchronous=FULL`); a write that fails leaves nothing partial behind (every
//! multi-row change is one transaction).
//!
//! Must never: store a secret token (records hold only public ids), delete, truncate or
//! overwrite a file it cannot read as its own database (a corrupt file, a newer schema, a
//! foreign database are refused and left untouched), or share the file with another running
//! onionstream.

use std::path::Path;
use std::time::Duration;

use rusqlite::{
    params, Connection, ErrorCode, OpenFlags, OptionalExtension, Row, TransactionBehavior,
};

use crate::record::{MessageRecord, UserRecord};

/// Name of the database file inside the data directory.
pub const DB_FILE_NAME: &str = "room.sqlite3";
/// Schema version written to `PRAGMA user_version`.
pub const SCHEMA_VERSION: i64 = 2;

/// How long [`Db::open`] waits for a lock held by someone else before answering
/// [`DbError::Locked`]: short, since the holder is another running onionstream which keeps the
/// lock for its whole life.
const OPEN_BUSY_TIMEOUT: Duration = Duration::from_millis(200);
/// Busy timeout once open (the lock is ours, so this only guards against the unexpected).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Version 1 of the schema. Booleans are INTEGER 0/1, times INTEGER ms, ids INTEGER.
/// `messages.id` is AUTOINCREMENT so `sqlite_sequence` remembers the highest id ever stored,
/// even after pruning.
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS users (
    id                     TEXT PRIMARY KEY NOT NULL,
    name                   TEXT,
    colour                 TEXT,
    tripcode               TEXT,
    banned                 INTEGER NOT NULL CHECK (banned IN (0, 1)),
    captcha_solved         INTEGER NOT NULL CHECK (captcha_solved IN (0, 1)),
    messages_since_captcha INTEGER NOT NULL CHECK (messages_since_captcha >= 0),
    first_seen_ms          INTEGER NOT NULL,
    last_seen_ms           INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    author      TEXT NOT NULL,
    name        TEXT NOT NULL,
    colour      TEXT NOT NULL,
    tripcode    TEXT,
    broadcaster INTEGER NOT NULL CHECK (broadcaster IN (0, 1)),
    text        TEXT NOT NULL,
    time_ms     INTEGER NOT NULL,
    hidden      INTEGER NOT NULL DEFAULT 0 CHECK (hidden IN (0, 1))
) STRICT;
CREATE INDEX IF NOT EXISTS messages_by_author ON messages (author, id);
";

/// Version 2: timeouts (a user may not post until a time, lifted by itself).
const SCHEMA_V2: &str = "
ALTER TABLE users ADD COLUMN timeout_until_ms INTEGER;
";

const USER_COLUMNS: &str = "id, name, colour, tripcode, banned, captcha_solved, \
     messages_since_captcha, first_seen_ms, last_seen_ms, timeout_until_ms";
const MESSAGE_COLUMNS: &str =
    "id, author, name, colour, tripcode, broadcaster, text, time_ms, hidden";

const SAVE_USER_SQL: &str = "INSERT OR REPLACE INTO users (id, name, colour, tripcode, banned, \
     captcha_solved, messages_since_captcha, first_seen_ms, last_seen_ms, timeout_until_ms) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
const INSERT_MESSAGE_SQL: &str = "INSERT INTO messages (id, author, name, colour, tripcode, \
     broadcaster, text, time_ms, hidden) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/// What can go wrong with the room's database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The file could not be opened or is not a database (corrupt); it was left untouched.
    #[error("cannot open the room database {path}: {reason}; the file was left untouched")]
    Open { path: String, reason: String },
    /// Another process (another running onionstream, or a program that has the file open)
    /// holds the database.
    #[error(
        "the room database {path} is locked by another process: another onionstream using \
         this data directory, or a program that has the file open; the file was left untouched"
    )]
    Locked { path: String },
    /// Written by a newer onionstream.
    #[error(
        "the room database {path} has schema version {found}, newer than this onionstream \
         understands ({SCHEMA_VERSION}); use a newer onionstream (the file was left untouched)"
    )]
    TooNew { path: String, found: i64 },
    /// A write failed (disk full, I/O error); nothing partial is left behind. Also used when a
    /// read fails after the database was opened.
    #[error("room database error: {0}")]
    Write(String),
}

/// The room's database, exclusively locked for as long as this value lives.
pub struct Db {
    conn: Connection,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.conn.path())
            .finish()
    }
}

impl Db {
    /// Opens or creates the database at `path` and its schema (in one transaction).
    ///
    /// Refuses a corrupt file or a foreign database with [`DbError::Open`] (never deletes or
    /// overwrites it: `PRAGMA quick_check` runs before anything is written), a file held by
    /// another running onionstream with [`DbError::Locked`] (promptly: the lock is exclusive and
    /// taken here, for the life of the `Db`), and a newer schema with [`DbError::TooNew`].
    pub fn open(path: &Path) -> Result<Db, DbError> {
        let shown = path.display().to_string();
        let fail = |e: rusqlite::Error| open_error(&shown, e);

        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(fail)?;
        conn.busy_timeout(OPEN_BUSY_TIMEOUT).map_err(fail)?;
        // Before the first access: the lock, once taken, is kept until the connection closes,
        // and in WAL mode no shared-memory index is used (nobody else may share the file).
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
            .map_err(fail)?;

        // Reads only, until the file is known to be a healthy database of ours.
        let check: String = conn
            .query_row("PRAGMA quick_check(1)", [], |row| row.get(0))
            .map_err(fail)?;
        if check != "ok" {
            return Err(DbError::Open {
                path: shown,
                reason: format!("not a database or corrupt (quick_check: {check})"),
            });
        }
        let found: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(fail)?;
        if found > SCHEMA_VERSION {
            return Err(DbError::TooNew { path: shown, found });
        }
        if found < 0 {
            return Err(DbError::Open {
                path: shown,
                reason: format!("unknown schema version {found}"),
            });
        }
        if found == 0 {
            let objects: i64 = conn
                .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
                .map_err(fail)?;
            if objects != 0 {
                return Err(DbError::Open {
                    path: shown,
                    reason: "not an onionstream database (it has tables but no schema version)"
                        .to_string(),
                });
            }
        }

        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
            .map_err(fail)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(DbError::Open {
                path: shown,
                reason: format!("cannot use a write-ahead log (journal mode stays {mode})"),
            });
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(fail)?;

        // The schema, in one transaction that always writes (user_version), so the exclusive
        // lock is taken now rather than at the first post.
        {
            let tx = rusqlite::Transaction::new_unchecked(&conn, TransactionBehavior::Immediate)
                .map_err(fail)?;
            tx.execute_batch(SCHEMA_V1).map_err(fail)?;
            if found < 2 {
                tx.execute_batch(SCHEMA_V2).map_err(fail)?;
            }
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(fail)?;
            tx.commit().map_err(fail)?;
        }
        conn.busy_timeout(BUSY_TIMEOUT).map_err(fail)?;
        sync_parent_dir(path);

        if found == 0 {
            tracing::info!(path = %shown, "created the room database");
        } else {
            tracing::debug!(path = %shown, "opened the room database");
        }
        Ok(Db { conn })
    }

    /// The value of setting `key`, if set.
    pub fn setting(&self, key: &str) -> Result<Option<String>, DbError> {
        self.conn
            .prepare_cached("SELECT value FROM settings WHERE key = ?1")
            .and_then(|mut stmt| stmt.query_row([key], |row| row.get(0)).optional())
            .map_err(write_error)
    }

    /// Sets (inserts or overwrites) setting `key`.
    pub fn set_setting(&self, key: &str, value: &str) -> Result<(), DbError> {
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO settings (key, value) VALUES (?1, ?2)")
            .and_then(|mut stmt| stmt.execute([key, value]))
            .map(|_| ())
            .map_err(write_error)
    }

    /// Every user.
    pub fn users(&self) -> Result<Vec<UserRecord>, DbError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY id");
        let mut stmt = self.conn.prepare(&sql).map_err(write_error)?;
        let rows = stmt.query_map([], user_from_row).map_err(write_error)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(write_error)
    }

    /// The user with public id `id`, if stored.
    pub fn user(&self, id: &str) -> Result<Option<UserRecord>, DbError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1");
        self.conn
            .prepare_cached(&sql)
            .and_then(|mut stmt| stmt.query_row([id], user_from_row).optional())
            .map_err(write_error)
    }

    /// Users whose id starts with `prefix` (lowercase letters and digits only), at most
    /// `limit`, in id order.
    pub fn users_with_prefix(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<UserRecord>, DbError> {
        if !prefix.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Ok(Vec::new());
        }
        // Ids are lowercase alphanumerics: `prefix..prefix~` spans exactly those that start
        // with it, and uses the primary key's index.
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id >= ?1 AND id < ?2 ORDER BY id LIMIT ?3"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(&sql).map_err(write_error)?;
        let rows = stmt
            .query_map(params![prefix, format!("{prefix}~"), limit], user_from_row)
            .map_err(write_error)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(write_error)
    }

    /// The public ids of banned users.
    pub fn banned_ids(&self) -> Result<Vec<String>, DbError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM users WHERE banned ORDER BY id")
            .map_err(write_error)?;
        let rows = stmt.query_map([], |row| row.get(0)).map_err(write_error)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(write_error)
    }

    /// Insert or replace one user.
    pub fn save_user(&self, user: &UserRecord) -> Result<(), DbError> {
        save_user_on(&self.conn, user).map_err(write_error)
    }

    /// The newest `limit` messages, oldest first.
    pub fn recent_messages(&self, limit: usize) -> Result<Vec<MessageRecord>, DbError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages ORDER BY id DESC LIMIT ?1");
        let mut stmt = self.conn.prepare_cached(&sql).map_err(write_error)?;
        let rows = stmt
            .query_map([limit], message_from_row)
            .map_err(write_error)?;
        let mut messages = rows.collect::<Result<Vec<_>, _>>().map_err(write_error)?;
        messages.reverse();
        Ok(messages)
    }

    /// The highest message id ever stored (0 if none): ids keep increasing across restarts even
    /// after pruning (`messages.id` is AUTOINCREMENT, remembered in `sqlite_sequence`). The
    /// caller assigns ids = this + 1, +2, ...
    pub fn max_message_id(&self) -> Result<u64, DbError> {
        let highest: i64 = self
            .conn
            .query_row(
                "SELECT max(
                    coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'messages'), 0),
                    coalesce((SELECT max(id) FROM messages), 0))",
                [],
                |row| row.get(0),
            )
            .map_err(write_error)?;
        Ok(u64::try_from(highest).unwrap_or(0))
    }

    /// Stores a new message. Fails (and stores nothing) if its id is already taken.
    pub fn insert_message(&self, message: &MessageRecord) -> Result<(), DbError> {
        insert_message_on(&self.conn, message).map_err(write_error)
    }

    /// Insert a message and save its author in ONE transaction (a post updates the author's
    /// counters).
    pub fn insert_message_and_user(
        &self,
        message: &MessageRecord,
        user: &UserRecord,
    ) -> Result<(), DbError> {
        let tx = self.begin()?;
        insert_message_on(&tx, message).map_err(write_error)?;
        save_user_on(&tx, user).map_err(write_error)?;
        tx.commit().map_err(write_error)
    }

    /// Set/clear the hidden flag of these messages (one transaction). Returns how many rows
    /// changed: messages already in that state, unknown ids and repeated ids count nothing.
    pub fn set_hidden(&self, ids: &[u64], hidden: bool) -> Result<usize, DbError> {
        let tx = self.begin()?;
        let mut changed = 0;
        {
            let mut stmt = tx
                .prepare_cached("UPDATE messages SET hidden = ?1 WHERE id = ?2 AND hidden <> ?1")
                .map_err(write_error)?;
            for &id in ids {
                // An id beyond i64 cannot be stored, so it names no message.
                let Ok(id) = i64::try_from(id) else { continue };
                changed += stmt.execute(params![hidden, id]).map_err(write_error)?;
            }
        }
        tx.commit().map_err(write_error)?;
        Ok(changed)
    }

    /// Hide every message of `author` (one transaction); returns their ids (all of that
    /// author's messages still stored, every one now hidden), oldest first.
    pub fn hide_all_by(&self, author: &str) -> Result<Vec<u64>, DbError> {
        let tx = self.begin()?;
        let ids = {
            let mut stmt = tx
                .prepare_cached("SELECT id FROM messages WHERE author = ?1 ORDER BY id")
                .map_err(write_error)?;
            let rows = stmt
                .query_map([author], |row| id_from_row(row, 0))
                .map_err(write_error)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(write_error)?
        };
        tx.execute(
            "UPDATE messages SET hidden = 1 WHERE author = ?1 AND hidden = 0",
            [author],
        )
        .map_err(write_error)?;
        tx.commit().map_err(write_error)?;
        Ok(ids)
    }

    /// Hide every message not hidden yet (clearing the chat); returns how many changed.
    pub fn hide_all(&self) -> Result<usize, DbError> {
        self.conn
            .execute("UPDATE messages SET hidden = 1 WHERE hidden = 0", [])
            .map_err(write_error)
    }

    /// Delete all but the newest `keep` messages. Returns how many were deleted.
    pub fn prune_messages(&self, keep: usize) -> Result<usize, DbError> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        self.conn
            .execute(
                "DELETE FROM messages WHERE id <= \
                 (SELECT id FROM messages ORDER BY id DESC LIMIT 1 OFFSET ?1)",
                [keep],
            )
            .map_err(write_error)
    }

    /// Begins a write transaction; it rolls back if dropped without commit.
    fn begin(&self) -> Result<rusqlite::Transaction<'_>, DbError> {
        rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .map_err(write_error)
    }
}

fn save_user_on(conn: &Connection, user: &UserRecord) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(SAVE_USER_SQL)?;
    stmt.execute(params![
        user.id,
        user.name,
        user.colour,
        user.tripcode,
        user.banned,
        user.captcha_solved,
        user.messages_since_captcha,
        user.first_seen_ms,
        user.last_seen_ms,
        user.timeout_until_ms,
    ])?;
    Ok(())
}

fn insert_message_on(conn: &Connection, message: &MessageRecord) -> rusqlite::Result<()> {
    let id = id_to_sql(message.id)?;
    let mut stmt = conn.prepare_cached(INSERT_MESSAGE_SQL)?;
    stmt.execute(params![
        id,
        message.author,
        message.name,
        message.colour,
        message.tripcode,
        message.broadcaster,
        message.text,
        message.time_ms,
        message.hidden,
    ])?;
    Ok(())
}

/// A message id as SQLite stores it (INTEGER is signed 64-bit).
fn id_to_sql(id: u64) -> rusqlite::Result<i64> {
    i64::try_from(id).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// A message id read back from column `idx`.
fn id_from_row(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let id: i64 = row.get(idx)?;
    u64::try_from(id).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, id))
}

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        colour: row.get(2)?,
        tripcode: row.get(3)?,
        banned: row.get(4)?,
        captcha_solved: row.get(5)?,
        messages_since_captcha: row.get(6)?,
        first_seen_ms: row.get(7)?,
        last_seen_ms: row.get(8)?,
        timeout_until_ms: row.get(9)?,
    })
}

fn message_from_row(row: &Row<'_>) -> rusqlite::Result<MessageRecord> {
    Ok(MessageRecord {
        id: id_from_row(row, 0)?,
        author: row.get(1)?,
        name: row.get(2)?,
        colour: row.get(3)?,
        tripcode: row.get(4)?,
        broadcaster: row.get(5)?,
        text: row.get(6)?,
        time_ms: row.get(7)?,
        hidden: row.get(8)?,
    })
}

/// Makes the creation of the database and WAL files durable too (their directory entries).
/// Best effort: SQLite already syncs the directory when it creates the WAL.
fn sync_parent_dir(path: &Path) {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        if let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot sync the data directory");
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// The SQLite primary result code of `e`, if it is one.
fn code_of(e: &rusqlite::Error) -> Option<ErrorCode> {
    e.sqlite_error_code()
}

/// A short human reason for `e`.
fn reason(e: &rusqlite::Error) -> String {
    match code_of(e) {
        Some(ErrorCode::DiskFull) => "the disk is full".to_string(),
        Some(ErrorCode::SystemIoFailure) => format!("an I/O error ({e})"),
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            "not a database or corrupt".to_string()
        }
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            "the database is locked".to_string()
        }
        Some(ErrorCode::ReadOnly) => "the database is read-only".to_string(),
        Some(ErrorCode::PermissionDenied) => "permission denied".to_string(),
        Some(ErrorCode::CannotOpen) => format!("cannot open the file ({e})"),
        Some(ErrorCode::OutOfMemory) => "out of memory".to_string(),
        Some(ErrorCode::ConstraintViolation) => format!("refused by a constraint ({e})"),
        _ => match e {
            rusqlite::Error::ToSqlConversionFailure(_) => {
                "a message id beyond the range SQLite stores".to_string()
            }
            _ => e.to_string(),
        },
    }
}

fn open_error(path: &str, e: rusqlite::Error) -> DbError {
    match code_of(&e) {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => DbError::Locked {
            path: path.to_string(),
        },
        _ => DbError::Open {
            path: path.to_string(),
            reason: reason(&e),
        },
    }
}

fn write_error(e: rusqlite::Error) -> DbError {
    let reason = reason(&e);
    tracing::warn!(error = %e, "room database: {reason}");
    DbError::Write(reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Instant;

    const KILL_CHILD_ENV: &str = "ONIONSTREAM_DB_KILL_CHILD_PATH";

    /// A unique temporary directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static COUNTER: AtomicU32 = AtomicU32::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let dir = std::env::temp_dir().join(format!(
                "onionstream-db-{name}-{}-{}-{nanos}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn db_path(&self) -> PathBuf {
            self.0.join(DB_FILE_NAME)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn user(id: &str) -> UserRecord {
        UserRecord {
            id: id.to_string(),
            name: Some(format!("name of {id}")),
            colour: Some("#12ab9f".to_string()),
            tripcode: Some("!trip".to_string()),
            banned: true,
            captcha_solved: true,
            messages_since_captcha: 4_000_000_000,
            first_seen_ms: 1_700_000_000_123,
            last_seen_ms: 1_700_000_999_456,
            timeout_until_ms: Some(1_700_001_000_000),
        }
    }

    fn message(id: u64, author: &str) -> MessageRecord {
        MessageRecord {
            id,
            author: author.to_string(),
            name: "Anon".to_string(),
            colour: "#ffffff".to_string(),
            tripcode: None,
            broadcaster: false,
            text: format!("message {id} «ünïcödé» 🧅"),
            time_ms: 1_700_000_000_000 + id as i64,
            hidden: false,
        }
    }

    #[test]
    fn durability_pragmas_are_in_effect() {
        let dir = TempDir::new("pragmas");
        let db = Db::open(&dir.db_path()).unwrap();
        let text = |sql: &str| -> String { db.conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        let number = |sql: &str| -> i64 { db.conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(text("PRAGMA journal_mode"), "wal");
        assert_eq!(text("PRAGMA locking_mode"), "exclusive");
        assert_eq!(number("PRAGMA synchronous"), 2); // FULL
        assert_eq!(number("PRAGMA busy_timeout"), 5000);
        assert_eq!(number("PRAGMA user_version"), SCHEMA_VERSION);
    }

    #[test]
    fn records_round_trip_every_field_and_survive_reopen() {
        let dir = TempDir::new("roundtrip");
        let full = user("aaaaaaaaaaaaaaaaaaaaaaaaaa");
        let bare = UserRecord {
            id: "bbbbbbbbbbbbbbbbbbbbbbbbbb".to_string(),
            first_seen_ms: -5,
            last_seen_ms: 0,
            ..UserRecord::default()
        };
        let plain = message(1, &bare.id);
        let rich = MessageRecord {
            id: 2,
            tripcode: Some("!abc".to_string()),
            broadcaster: true,
            hidden: true,
            text: String::new(),
            ..message(2, &full.id)
        };
        {
            let db = Db::open(&dir.db_path()).unwrap();
            assert!(db.users().unwrap().is_empty());
            assert!(db.recent_messages(10).unwrap().is_empty());
            assert_eq!(db.max_message_id().unwrap(), 0);
            db.save_user(&full).unwrap();
            db.save_user(&bare).unwrap();
            db.insert_message(&plain).unwrap();
            db.insert_message_and_user(&rich, &full).unwrap();
            assert_eq!(db.users().unwrap(), vec![full.clone(), bare.clone()]);
            assert_eq!(
                db.recent_messages(10).unwrap(),
                vec![plain.clone(), rich.clone()]
            );
        }
        let db = Db::open(&dir.db_path()).unwrap();
        assert_eq!(db.users().unwrap(), vec![full.clone(), bare.clone()]);
        assert_eq!(db.recent_messages(10).unwrap(), vec![plain, rich]);
        assert_eq!(db.max_message_id().unwrap(), 2);

        // Replace: the same id overwrites every field, None included.
        let changed = UserRecord {
            name: None,
            colour: None,
            tripcode: None,
            banned: false,
            captcha_solved: false,
            messages_since_captcha: 0,
            timeout_until_ms: None,
            ..full.clone()
        };
        db.save_user(&changed).unwrap();
        assert_eq!(db.users().unwrap(), vec![changed, bare]);
    }

    #[test]
    fn duplicate_message_id_is_refused_and_leaves_nothing() {
        let dir = TempDir::new("duplicate");
        let db = Db::open(&dir.db_path()).unwrap();
        db.insert_message(&message(1, "a")).unwrap();
        let before = user("a");
        db.save_user(&before).unwrap();
        let after = UserRecord {
            messages_since_captcha: 1,
            ..before.clone()
        };
        let err = db
            .insert_message_and_user(&message(1, "a"), &after)
            .unwrap_err();
        assert!(matches!(err, DbError::Write(_)), "{err:?}");
        // The transaction rolled back: the user was not updated.
        assert_eq!(db.users().unwrap(), vec![before]);
        assert_eq!(db.recent_messages(10).unwrap(), vec![message(1, "a")]);
    }

    #[test]
    fn recent_messages_are_the_newest_oldest_first() {
        let dir = TempDir::new("recent");
        let db = Db::open(&dir.db_path()).unwrap();
        for id in 1..=10 {
            db.insert_message(&message(id, "a")).unwrap();
        }
        let ids: Vec<u64> = db
            .recent_messages(3)
            .unwrap()
            .iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(ids, vec![8, 9, 10]);
        assert!(db.recent_messages(0).unwrap().is_empty());
        assert_eq!(db.recent_messages(usize::MAX).unwrap().len(), 10);
    }

    #[test]
    fn max_message_id_survives_pruning_and_reopen() {
        let dir = TempDir::new("prune");
        {
            let db = Db::open(&dir.db_path()).unwrap();
            for id in 1..=10 {
                db.insert_message(&message(id, "a")).unwrap();
            }
            assert_eq!(db.prune_messages(20).unwrap(), 0);
            assert_eq!(db.prune_messages(4).unwrap(), 6);
            let ids: Vec<u64> = db
                .recent_messages(100)
                .unwrap()
                .iter()
                .map(|m| m.id)
                .collect();
            assert_eq!(ids, vec![7, 8, 9, 10]);
            assert_eq!(db.prune_messages(0).unwrap(), 4);
            assert!(db.recent_messages(100).unwrap().is_empty());
            assert_eq!(db.max_message_id().unwrap(), 10);
        }
        let db = Db::open(&dir.db_path()).unwrap();
        assert_eq!(db.max_message_id().unwrap(), 10);
        db.insert_message(&message(11, "a")).unwrap();
        assert_eq!(db.max_message_id().unwrap(), 11);
    }

    #[test]
    fn hide_all_by_hides_only_that_author() {
        let dir = TempDir::new("hideall");
        let db = Db::open(&dir.db_path()).unwrap();
        for id in 1..=6 {
            let author = if id % 2 == 0 { "even" } else { "odd" };
            db.insert_message(&message(id, author)).unwrap();
        }
        assert_eq!(db.set_hidden(&[2], true).unwrap(), 1);
        assert_eq!(db.hide_all_by("even").unwrap(), vec![2, 4, 6]);
        for m in db.recent_messages(10).unwrap() {
            assert_eq!(m.hidden, m.author == "even", "{m:?}");
        }
        assert!(db.hide_all_by("nobody").unwrap().is_empty());
    }

    #[test]
    fn set_hidden_counts_changed_rows() {
        let dir = TempDir::new("sethidden");
        let db = Db::open(&dir.db_path()).unwrap();
        for id in 1..=5 {
            db.insert_message(&message(id, "a")).unwrap();
        }
        assert_eq!(db.set_hidden(&[1, 2, 3, 99, u64::MAX], true).unwrap(), 3);
        assert_eq!(db.set_hidden(&[1, 2, 4, 4], true).unwrap(), 1);
        assert_eq!(db.set_hidden(&[], true).unwrap(), 0);
        assert_eq!(db.set_hidden(&[1, 5], false).unwrap(), 1);
        let hidden: Vec<u64> = db
            .recent_messages(10)
            .unwrap()
            .iter()
            .filter(|m| m.hidden)
            .map(|m| m.id)
            .collect();
        assert_eq!(hidden, vec![2, 3, 4]);
    }

    #[test]
    fn settings_round_trip_and_overwrite() {
        let dir = TempDir::new("settings");
        {
            let db = Db::open(&dir.db_path()).unwrap();
            assert_eq!(db.setting("title").unwrap(), None);
            db.set_setting("title", "first").unwrap();
            db.set_setting("title", "second «x»").unwrap();
            db.set_setting("room_key", "").unwrap();
            assert_eq!(db.setting("title").unwrap().as_deref(), Some("second «x»"));
        }
        let db = Db::open(&dir.db_path()).unwrap();
        assert_eq!(db.setting("title").unwrap().as_deref(), Some("second «x»"));
        assert_eq!(db.setting("room_key").unwrap().as_deref(), Some(""));
        assert_eq!(db.setting("missing").unwrap(), None);
    }

    #[test]
    fn second_open_is_locked_promptly() {
        let dir = TempDir::new("locked");
        let db = Db::open(&dir.db_path()).unwrap();
        db.insert_message(&message(1, "a")).unwrap();
        let start = Instant::now();
        let err = Db::open(&dir.db_path()).unwrap_err();
        let took = start.elapsed();
        assert!(matches!(err, DbError::Locked { .. }), "{err:?}");
        assert!(took < Duration::from_secs(2), "took {took:?}");
        assert!(err.to_string().contains(DB_FILE_NAME), "{err}");
        // The holder is unaffected, and the lock goes with it.
        db.insert_message(&message(2, "a")).unwrap();
        drop(db);
        let db = Db::open(&dir.db_path()).unwrap();
        assert_eq!(db.recent_messages(10).unwrap().len(), 2);
    }

    #[test]
    fn garbage_file_is_refused_and_left_untouched() {
        let dir = TempDir::new("garbage");
        let path = dir.db_path();
        let mut x: u32 = 0x9e37_79b9;
        let garbage: Vec<u8> = (0..8192)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        std::fs::write(&path, &garbage).unwrap();
        let err = Db::open(&path).unwrap_err();
        match &err {
            DbError::Open { path: p, reason } => {
                assert!(p.contains(DB_FILE_NAME), "{p}");
                assert_eq!(reason, "not a database or corrupt");
            }
            other => panic!("expected Open, got {other:?}"),
        }
        assert!(err.to_string().contains("left untouched"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), garbage);
    }

    #[test]
    fn foreign_database_is_refused() {
        let dir = TempDir::new("foreign");
        let path = dir.db_path();
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch("CREATE TABLE other (x INTEGER)")
                .unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let err = Db::open(&path).unwrap_err();
        assert!(matches!(err, DbError::Open { .. }), "{err:?}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn a_version_1_database_is_upgraded_keeping_its_rows() {
        let dir = TempDir::new("upgrade");
        let path = dir.db_path();
        {
            // A database as version 1 wrote it: no timeouts column.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA_V1).unwrap();
            conn.execute(
                "INSERT INTO users (id, name, colour, tripcode, banned, captcha_solved, \
                 messages_since_captcha, first_seen_ms, last_seen_ms) \
                 VALUES ('old', 'Old', NULL, NULL, 1, 0, 3, 1, 2)",
                [],
            )
            .unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
        }
        let db = Db::open(&path).unwrap();
        let old = db.user("old").unwrap().unwrap();
        assert_eq!(old.name.as_deref(), Some("Old"));
        assert!(old.banned);
        assert_eq!(old.timeout_until_ms, None);
        let timed = UserRecord {
            timeout_until_ms: Some(99),
            ..old
        };
        db.save_user(&timed).unwrap();
        drop(db);
        let db = Db::open(&path).unwrap();
        assert_eq!(db.user("old").unwrap().unwrap().timeout_until_ms, Some(99));
        let version: i64 = db
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn newer_schema_is_too_new() {
        let dir = TempDir::new("toonew");
        let path = dir.db_path();
        drop(Db::open(&path).unwrap());
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        match Db::open(&path).unwrap_err() {
            DbError::TooNew { path: p, found } => {
                assert_eq!(found, SCHEMA_VERSION + 1);
                assert!(p.contains(DB_FILE_NAME), "{p}");
            }
            other => panic!("expected TooNew, got {other:?}"),
        }
    }

    /// Child side of [`row_survives_sigkill_right_after_insert`]; does nothing unless run by it.
    #[test]
    fn db_kill_child_helper() {
        let Some(path) = std::env::var_os(KILL_CHILD_ENV) else {
            return;
        };
        let db = Db::open(Path::new(&path)).unwrap();
        let mut author = user("kkkkkkkkkkkkkkkkkkkkkkkkkk");
        author.messages_since_captcha = 7;
        db.insert_message_and_user(&message(42, &author.id), &author)
            .unwrap();
        let mut out = std::io::stdout().lock();
        out.write_all(b"inserted\n").unwrap();
        out.flush().unwrap();
        drop(out);
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    }

    #[test]
    fn row_survives_sigkill_right_after_insert() {
        let dir = TempDir::new("sigkill");
        let path = dir.db_path();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "db::tests::db_kill_child_helper",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(KILL_CHILD_ENV, &path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // The test harness may print "test ... " on the same line first.
                if line.trim_end().ends_with("inserted") {
                    let _ = tx.send(());
                    return;
                }
            }
        });
        let got = rx.recv_timeout(Duration::from_secs(60));
        // While the child lives, its lock keeps this process out, promptly.
        let locked = got.is_ok().then(|| {
            let start = Instant::now();
            (Db::open(&path).map(drop), start.elapsed())
        });
        child.kill().unwrap(); // SIGKILL on Unix
        let status = child.wait().unwrap();
        got.expect("the child never reported its insert");
        assert!(!status.success(), "{status:?}");
        let (result, took) = locked.unwrap();
        assert!(matches!(result, Err(DbError::Locked { .. })), "{result:?}");
        assert!(took < Duration::from_secs(2), "took {took:?}");

        let db = Db::open(&path).unwrap();
        let messages = db.recent_messages(10).unwrap();
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].id, 42);
        let users = db.users().unwrap();
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].messages_since_captcha, 7);
        assert_eq!(db.max_message_id().unwrap(), 42);
    }

    /// Measures `insert_message_and_user` (one fsync'd transaction each). Prints, asserts
    /// nothing about speed: run with `--release -- --nocapture` to see it.
    #[test]
    fn insert_message_and_user_latency_report() {
        let dir = TempDir::new("latency");
        let db = Db::open(&dir.db_path()).unwrap();
        let mut author = user("llllllllllllllllllllllllll");
        let mut times = Vec::with_capacity(500);
        for id in 1..=500u64 {
            author.messages_since_captcha = id as u32;
            let m = message(id, &author.id);
            let start = Instant::now();
            db.insert_message_and_user(&m, &author).unwrap();
            times.push(start.elapsed());
        }
        times.sort();
        let pct = |p: usize| times[(times.len() * p / 100).min(times.len() - 1)];
        println!(
            "insert_message_and_user over {} inserts in {}: p50 {:?}, p99 {:?}, max {:?}",
            times.len(),
            dir.0.display(),
            pct(50),
            pct(99),
            times[times.len() - 1]
        );
        assert_eq!(db.recent_messages(1000).unwrap().len(), 500);
    }
}
