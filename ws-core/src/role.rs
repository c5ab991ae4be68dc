//! Which end of a connection this is: a leaf every other module may use.

/// Which end of the connection we are. Decides masking in both directions
/// and which permessage-deflate parameters apply to which direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// We accepted the connection: incoming frames must be masked.
    Server,
    /// We opened the connection: outgoing frames are masked.
    Client,
}
