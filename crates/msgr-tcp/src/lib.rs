//! msgr1 over TCP on a mio reactor.
