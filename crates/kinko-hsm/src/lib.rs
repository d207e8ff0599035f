//! kinko-hsm
