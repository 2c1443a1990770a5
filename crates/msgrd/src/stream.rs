//! `ping --one-way`: a true one-way stream, as a raw socket stream or perftest's `ib_send_bw`
//! measures one.
//!
//! The client sends its share of stream messages on each connection and the server answers
//! none of them: msgr1 ACKs are all that comes back. `--concurrency` bounds what waits in the
//! client (its send queue holds `concurrency x size` payload bytes; a sender that finds it
//! full waits for room). At the end the client sends an end marker on each connection; msgr1
//! delivers in order, so when the server answers it every stream message before it has been
//! dispatched, and the answer carries the marker's session sequence number as the server
//! saw it: the server's count, checked against what the client sent.

use std::time::Duration;

use bytes::Bytes;

use msgr::{Connection, Message, MessengerError, NodeConnection};

use crate::client::{Client, Driver};
use crate::proto::MSG_STREAM_END;
use crate::AnyError;

/// How long a sender waits for room in a full send queue before giving up.
const SEND_WAIT: Duration = Duration::from_secs(120);

/// The client's send queue limit for a stream of `size`-byte messages, `concurrency` deep.
pub(crate) fn queue_bytes(size: usize, concurrency: u64) -> u64 {
    (size.max(1) as u64).saturating_mul(concurrency.max(1))
}

/// An end marker (answered by the server with its count).
fn end_marker() -> Message {
    Message::new(MSG_STREAM_END, Bytes::new())
}

/// Open the session with one end marker and its answer; returns the sequence number the
/// server saw on it (the stream's messages follow it).
pub(crate) fn warm_up(driver: &Driver, conn: &NodeConnection) -> Result<u64, AnyError> {
    driver.expect(1);
    conn.send_message(end_marker())?;
    driver.wait_done()?;
    driver.server_seq().ok_or_else(|| {
        "the server's answer to the end marker carries no count: is it an older msgrd?".into()
    })
}

/// Stream every client's share, then an end marker each, and wait for the answers.
pub(crate) fn run(clients: &[Client]) -> Result<(), AnyError> {
    for c in clients {
        c.driver.expect(1);
    }
    send_all(clients)?;
    for c in clients {
        c.conn.send_message_timeout(end_marker(), SEND_WAIT)?;
    }
    for c in clients {
        c.driver.wait_done()?;
        let expected = c.warm_seq + c.share + 1;
        match c.driver.server_seq() {
            Some(seq) if seq == expected => {}
            seen => {
                return Err(format!(
                    "the server saw the end marker as message {seen:?}, expected {expected} \
                     ({} stream messages sent after the warm-up): messages were lost (a session \
                     reset? see the log)",
                    c.share
                )
                .into())
            }
        }
    }
    Ok(())
}

/// Round robin over the connections, each filled until its queue is full; the sender sleeps
/// only when every unfinished queue is full.
fn send_all(clients: &[Client]) -> Result<(), AnyError> {
    let mut left: Vec<u64> = clients.iter().map(|c| c.share).collect();
    loop {
        let mut progressed = false;
        let mut unfinished = None;
        for (i, c) in clients.iter().enumerate() {
            while left[i] > 0 {
                match c.conn.send_message(c.driver.message(left[i])) {
                    Ok(()) => {
                        left[i] -= 1;
                        progressed = true;
                    }
                    Err(MessengerError::QueueFull { .. }) => break,
                    Err(e) => {
                        c.driver.note_send_error(&e);
                        return Err(e.into());
                    }
                }
            }
            if left[i] > 0 && unfinished.is_none() {
                unfinished = Some(i);
            }
        }
        let Some(i) = unfinished else {
            return Ok(());
        };
        if !progressed {
            let c = &clients[i];
            c.conn
                .send_message_timeout(c.driver.message(left[i]), SEND_WAIT)?;
            left[i] -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_holds_concurrency_messages() {
        assert_eq!(queue_bytes(64, 1024), 65536);
        assert_eq!(queue_bytes(0, 0), 1);
        assert_eq!(queue_bytes(1 << 20, u64::MAX), u64::MAX);
    }
}
