//! The MySQL client/server protocol as rwsplit needs it: framing, the connection phase on both
//! sides, and the shape of responses. Packet layouts come from `mysql_common` where it has them.

pub mod auth;
pub mod connect;
pub mod frame;
pub mod handshake;
pub mod packets;
pub mod response;

/// Command bytes rwsplit handles. `mysql_common::constants::Command` has the same values but no
/// conversion from a byte, which is what a server-side dispatcher needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Command {
    Quit = 0x01,
    InitDb = 0x02,
    Query = 0x03,
    FieldList = 0x04,
    /// `mysqladmin flush-*` / `mysql_refresh()`: a FLUSH, run on the primary.
    Refresh = 0x07,
    Statistics = 0x09,
    ProcessKill = 0x0C,
    Ping = 0x0E,
    ChangeUser = 0x11,
    /// A replica or change-data-capture tool asking for the binlog: refused with a clear
    /// error (rwsplit relays no replication stream).
    BinlogDump = 0x12,
    RegisterSlave = 0x15,
    BinlogDumpGtid = 0x1E,
    StmtPrepare = 0x16,
    StmtExecute = 0x17,
    StmtSendLongData = 0x18,
    StmtClose = 0x19,
    StmtReset = 0x1A,
    SetOption = 0x1B,
    StmtFetch = 0x1C,
    ResetConnection = 0x1F,
}

impl Command {
    /// The command packet: this command's byte, then its argument.
    pub fn packet(self, arg: &[u8]) -> Vec<u8> {
        let mut p = Vec::with_capacity(arg.len() + 1);
        p.push(self as u8);
        p.extend_from_slice(arg);
        p
    }

    pub fn from_byte(b: u8) -> Option<Command> {
        use Command::*;
        Some(match b {
            0x01 => Quit,
            0x02 => InitDb,
            0x03 => Query,
            0x04 => FieldList,
            0x07 => Refresh,
            0x09 => Statistics,
            0x0C => ProcessKill,
            0x0E => Ping,
            0x11 => ChangeUser,
            0x12 => BinlogDump,
            0x15 => RegisterSlave,
            0x1E => BinlogDumpGtid,
            0x16 => StmtPrepare,
            0x17 => StmtExecute,
            0x18 => StmtSendLongData,
            0x19 => StmtClose,
            0x1A => StmtReset,
            0x1B => SetOption,
            0x1C => StmtFetch,
            0x1F => ResetConnection,
            _ => return None,
        })
    }

    /// A short lowercase name for logs and metrics.
    pub fn name(self) -> &'static str {
        use Command::*;
        match self {
            Quit => "quit",
            InitDb => "init_db",
            Query => "query",
            FieldList => "field_list",
            Refresh => "refresh",
            Statistics => "statistics",
            ProcessKill => "process_kill",
            Ping => "ping",
            ChangeUser => "change_user",
            BinlogDump => "binlog_dump",
            RegisterSlave => "register_slave",
            BinlogDumpGtid => "binlog_dump_gtid",
            StmtPrepare => "stmt_prepare",
            StmtExecute => "stmt_execute",
            StmtSendLongData => "stmt_send_long_data",
            StmtClose => "stmt_close",
            StmtReset => "stmt_reset",
            SetOption => "set_option",
            StmtFetch => "stmt_fetch",
            ResetConnection => "reset_connection",
        }
    }
}
