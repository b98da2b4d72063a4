//! Budgets: how many cost units a provider may spend per period.
//!
//! A provider is a capability (a paid API, a device with wear). The config gives each a number of units
//! per period of `period_s` seconds, periods aligned to the Unix epoch (a day budget resets at 00:00 UTC).
//! Each action's cost comes from its manifest. A command is charged when it is accepted, before its
//! RECEIVED record: a command taken counts whether it then succeeds or not, and the charge is written in
//! the same transaction as the record (so it survives a crash) and undone if that write fails.
//! Spending `units` exactly is allowed; one more is BUDGET_EXCEEDED.

use std::collections::HashMap;

use if_protocol::{ErrorCode, IfError};
use serde::{Deserialize, Serialize};

/// A provider's allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Units per period.
    pub units: u64,
    /// Period length, seconds (at least 1).
    pub period_s: u64,
}

/// What a provider has spent in one period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Spent {
    /// The period number: `unix seconds / period_s`.
    pub period: u64,
    /// Units spent in it.
    pub units: u64,
}

/// A charge that can be written or undone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The provider.
    pub provider: String,
    /// The cost charged.
    pub cost: u64,
    /// The provider's spending after the charge, to persist.
    pub after: Spent,
    before: Option<Spent>,
    /// Its allowance.
    pub limit: Limit,
}

impl Charge {
    /// The witness text of the charge.
    pub fn describe(&self) -> String {
        format!(
            "cost {} charged to {}: {} of {} units this period",
            self.cost, self.provider, self.after.units, self.limit.units
        )
    }
}

/// Allowances and spending.
#[derive(Debug, Clone, Default)]
pub struct Budgets {
    limits: HashMap<String, Limit>,
    spent: HashMap<String, Spent>,
}

impl Budgets {
    /// Allowances from the config, spending as persisted.
    pub fn new(limits: HashMap<String, Limit>, spent: HashMap<String, Spent>) -> Self {
        Budgets { limits, spent }
    }

    /// Charges `cost` to `provider` at `now_s`; `None` when the provider has no budget or the cost is 0.
    pub fn charge(&mut self, provider: &str, cost: u64, now_s: u64) -> Result<Option<Charge>, IfError> {
        let Some(limit) = self.limits.get(provider).copied() else { return Ok(None) };
        if cost == 0 {
            return Ok(None);
        }
        let period = now_s / limit.period_s.max(1);
        let before = self.spent.get(provider).copied();
        let so_far = before.filter(|s| s.period == period).map_or(0, |s| s.units);
        let total = so_far.saturating_add(cost);
        if total > limit.units {
            return Err(IfError::format(
                ErrorCode::BudgetExceeded,
                format_args!(
                    "{provider}: {so_far} of {} units spent this period; this action costs {cost}",
                    limit.units
                ),
            ));
        }
        let after = Spent { period, units: total };
        self.spent.insert(provider.to_string(), after);
        Ok(Some(Charge { provider: provider.to_string(), cost, after, before, limit }))
    }

    /// Whether `cost` would fit `provider`'s budget now, charging nothing.
    pub fn check(&self, provider: &str, cost: u64, now_s: u64) -> Result<(), IfError> {
        self.clone().charge(provider, cost, now_s).map(|_| ())
    }

    /// Undoes a charge whose record could not be written.
    pub fn refund(&mut self, c: &Charge) {
        match c.before {
            Some(b) => self.spent.insert(c.provider.clone(), b),
            None => self.spent.remove(&c.provider),
        };
    }

    /// Spending per provider at `now_s`, for the status message.
    pub fn status(&self, now_s: u64) -> Vec<if_protocol::messages::status::Budget> {
        let mut rows: Vec<_> = self
            .limits
            .iter()
            .map(|(p, l)| {
                let period = now_s / l.period_s.max(1);
                let spent = self.spent.get(p).filter(|s| s.period == period).map_or(0, |s| s.units);
                if_protocol::messages::status::Budget {
                    provider: p.clone(),
                    units: l.units,
                    period_s: l.period_s,
                    spent,
                }
            })
            .collect();
        rows.sort_by(|a, b| a.provider.cmp(&b.provider));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budgets(units: u64) -> Budgets {
        let limits = HashMap::from([("cam".to_string(), Limit { units, period_s: 3600 })]);
        Budgets::new(limits, HashMap::new())
    }

    #[test]
    fn exactly_the_limit_is_allowed_and_one_more_is_refused() {
        let mut b = budgets(3);
        assert!(b.charge("cam", 2, 7200).expect("2 of 3").is_some());
        let at = b.charge("cam", 1, 7201).expect("3 of 3").expect("charged");
        assert_eq!(at.after, Spent { period: 2, units: 3 });
        assert_eq!(b.charge("cam", 1, 7202).expect_err("4 of 3").code(), ErrorCode::BudgetExceeded);
        assert_eq!(b.charge("cam", 0, 7202).expect("free actions always pass"), None);
        assert_eq!(b.charge("other", 100, 7202).expect("no budget, no limit"), None);
        assert!(b.charge("cam", 1, 10_800).expect("a new period").is_some());
    }

    #[test]
    fn a_refund_restores_the_spending_before_the_charge() {
        let mut b = budgets(1);
        let c = b.charge("cam", 1, 10).expect("ok").expect("charged");
        b.refund(&c);
        assert!(b.charge("cam", 1, 10).expect("room again").is_some());
        assert_eq!(b.status(10)[0].spent, 1);
    }

    #[test]
    fn spending_restored_from_the_log_counts() {
        let limits = HashMap::from([("cam".to_string(), Limit { units: 2, period_s: 60 })]);
        let mut b = Budgets::new(limits, HashMap::from([("cam".to_string(), Spent { period: 1, units: 2 })]));
        assert_eq!(b.charge("cam", 1, 61).expect_err("spent").code(), ErrorCode::BudgetExceeded);
        assert!(b.charge("cam", 1, 121).expect("next period").is_some());
    }
}
