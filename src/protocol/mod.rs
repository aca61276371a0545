//! The MySQL wire protocol as causeway speaks it on both sides: packet
//! framing, connection-phase messages and the small messages the proxy builds
//! or inspects itself. Rows are never decoded.

pub mod compress;
pub mod handshake;
pub mod messages;
pub mod packet;
pub mod query_attrs;
pub mod stream;

pub use messages::{ErrPacket, OkPacket};
pub use packet::{PacketConn, PacketError};
