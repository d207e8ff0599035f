//! Exhaustion: many pending requests, oversized messages, idle connections, a client that never
//! reads its stream.
