//! The client's integration tests, one binary (no Bevy): the protocol against the captured SDK
//! messages, and the session client against the simulator.

mod hostile;
mod protocol;
mod session;
mod token_server;
