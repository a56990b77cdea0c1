//! TEMPORARY SKELETON — being implemented; signatures are the contract.
use super::model::*;

#[derive(Clone, Debug, Default)]
pub struct FloorMachine {}

impl FloorMachine {
    pub fn new() -> Self {
        todo!()
    }
    /// What `cmd` would do at `now`; the machine is not changed.
    pub fn decide(&self, _cmd: &Command, _now: Millis) -> Result<Vec<FloorEvent>, FloorError> {
        todo!()
    }
    /// Applies a decided or stored event. Never fails: stored events were valid when decided.
    pub fn apply(&mut self, _event: &FloorEvent) {
        todo!()
    }
    /// `decide` then `apply`.
    pub fn handle(&mut self, _cmd: &Command, _now: Millis) -> Result<Vec<FloorEvent>, FloorError> {
        todo!()
    }
    /// Warnings and timeouts due at `now` (not applied).
    pub fn tick(&self, _now: Millis) -> Vec<FloorEvent> {
        todo!()
    }
    /// When `tick` next has something to say.
    pub fn next_deadline(&self) -> Option<Millis> {
        todo!()
    }
    /// Open, not granted hands in queue order: pinned first, then by policy.
    pub fn queue(&self) -> Vec<&Hand> {
        todo!()
    }
    pub fn position(&self, _hand: HandId) -> Option<usize> {
        todo!()
    }
    pub fn holders(&self) -> &[Turn] {
        todo!()
    }
    pub fn holder_by_sub(&self, _sub: &str) -> Option<&Turn> {
        todo!()
    }
    /// An open hand: queued or holding the floor.
    pub fn hand(&self, _id: HandId) -> Option<&Hand> {
        todo!()
    }
    pub fn pinned(&self) -> &[HandId] {
        todo!()
    }
    pub fn policy(&self) -> Policy {
        todo!()
    }
    pub fn panel_size(&self) -> u32 {
        todo!()
    }
    pub fn default_limit_ms(&self) -> Millis {
        todo!()
    }
    /// Cumulative floor time of a fairness key (ended turns).
    pub fn spoken_ms(&self, _fairness_key: &str) -> Millis {
        todo!()
    }
}
