//! The run loop: [`World::run`] steps the nodes and the network in virtual time through the
//! plan, to a quiet end, then checks; [`run`] runs one seed.

use std::time::Duration;

use msgr_core::api::Messenger;
use msgr_mem::{run_until_idle, SimConfig};

use crate::record;
use crate::scenario::Scenario;
use crate::world::World;

impl World {
    /// Every message accounted for (see [`record::settled`]).
    fn settled(&self) -> bool {
        record::settled(&self.log.lock(), &self.sent)
    }

    /// The checks of [`record::check`] on this run.
    fn check(&self) -> Result<(), String> {
        record::check(&self.log.lock(), &self.sent, self.scenario.lossless())
    }

    /// Run the plan, then a quiet second (no more network drops), then check.
    pub fn run(&mut self) -> Result<String, String> {
        self.make_plan();
        let limit = Duration::from_secs(60);
        let mut quiet_until: Option<Duration> = None;
        let mut rounds = 0u64;
        loop {
            let now = self.now();
            while let Some(e) = self.plan.first_entry() {
                if e.key().0 > now {
                    break;
                }
                let a = e.remove();
                self.apply(a);
            }
            if !self.held.is_empty() {
                self.send_held();
            }
            let next = run_until_idle(&self.live_nodes(), &self.net);
            rounds += 1;
            if !self.log.lock().errors.is_empty() {
                break;
            }
            let now = self.now();
            if quiet_until.is_none()
                && self.plan.is_empty()
                && self.held.is_empty()
                && self.settled()
            {
                // Late duplicates or replays would show up now.
                self.net.set_sim_config(SimConfig {
                    kill_one_in: 0,
                    ..self.net_cfg.clone()
                });
                self.net.heal_all();
                quiet_until = Some(now + Duration::from_secs(1));
            }
            if quiet_until.is_some_and(|q| now >= q) {
                break;
            }
            if now > limit {
                self.check()?;
                let log = self.log.lock();
                return Err(format!(
                    "did not settle within {limit:?}: {} sent, {} delivered, {} reported, {} held",
                    self.sent.len(),
                    log.deliveries.len(),
                    log.reported.len(),
                    self.held.len()
                ));
            }
            let mut t = next.map(|t| t - self.start);
            for c in [self.plan.first_key_value().map(|(k, _)| k.0), quiet_until] {
                t = match (t, c) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            match t {
                Some(t) => self.clock.advance_to(self.start + t.max(now)),
                None if !self.held.is_empty() => self.clock.advance(Duration::from_millis(10)),
                None => {
                    self.check()?;
                    return Err("stuck: nothing left to do, not settled".into());
                }
            }
        }
        self.check()?;
        // The end: shut every node down; lossless sessions must have nothing left to report.
        self.log.lock().final_shutdown = true;
        for s in &mut self.slots {
            if let Some(n) = s.node.take() {
                n.shutdown();
            }
        }
        let mut log = self.log.lock();
        log.client_conns.clear();
        // (The driver's own fault injection may break a link just before the end.)
        if self.scenario.lossless() && self.inject_failures == 0 && log.reported_at_end > 0 {
            return Err(format!(
                "{} messages still unacknowledged at the end",
                log.reported_at_end
            ));
        }
        let st = self.net.stats();
        Ok(format!(
            "{} msgs ({} delivered, {} reported, {} refused), {} connects, {} accepts, {} faults, \
             {} resets, {} remote resets, {} net kills, {} dials, {} rounds, {:?} virtual, \
             trace {:016x}",
            self.sent.len(),
            log.deliveries.len(),
            log.reported.len(),
            self.refused_sends,
            log.connects,
            log.accepts,
            log.faults,
            log.resets,
            log.remote_resets,
            st.kills,
            st.dials,
            rounds,
            self.now(),
            log.hash
        ))
    }
}

/// Run `seed` of `scenario`: a summary of the run (with its trace hash), or what went wrong.
pub fn run(seed: u64, scenario: Scenario) -> Result<String, String> {
    let mut w = World::new(seed, scenario);
    let r = w.run();
    // Break the log -> connection -> node cycle, whatever happened.
    w.log.lock().client_conns.clear();
    for s in &mut w.slots {
        if let Some(n) = s.node.take() {
            n.shutdown();
        }
    }
    r
}
