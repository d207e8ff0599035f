//! kinko-store (being written).
