//! Billing statements from settled intervals (docs/billing-rules.md, BL-1 to BL-4): what each
//! site's owner was charged over a billing period, summed per participant, and each
//! aggregator's portfolio with its deviations netted. Pure: the node reads the settled buckets
//! and the adjustments, this module adds them up.

use crate::settle_state::SiteSettlement;
use bcte_types::Price;
use bcte_types::units::div_round_half_away;

/// One site's (or one portfolio's) bill over a period, in Wh and base units (BL-2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bill {
    /// Settled intervals counted.
    pub intervals: u32,
    /// Of them, settled on the schedule for want of a reading.
    pub estimated: u32,
    /// Energy billed as taken (Wh, ≥ 0).
    pub wh_bought: i64,
    /// Energy billed as fed in (Wh, ≥ 0).
    pub wh_sold: i64,
    /// Energy charges (base units; positive: the owner pays).
    pub energy_charge: i64,
    /// Imbalance charges.
    pub imbalance_charge: i64,
    /// True-ups and corrections booked in the period.
    pub adjustments: i64,
    /// Contract differences (P2P contracts).
    pub contracts: i64,
    /// Flexibility payments (negative: paid to the owner).
    pub flexibility: i64,
    /// Deviation from the schedule, summed (Wh).
    pub deviation_wh: i64,
}

impl Bill {
    /// BL-2.1: adds one settled interval of the site. The energy billed is the metered energy,
    /// or the scheduled energy when the site was estimated.
    pub fn add_interval(&mut self, s: &SiteSettlement) {
        self.intervals += 1;
        if s.estimated() {
            self.estimated += 1;
        }
        let billed = s.metered_wh.unwrap_or(s.scheduled_wh);
        if billed >= 0 {
            self.wh_bought += billed;
        } else {
            self.wh_sold -= billed;
        }
        self.energy_charge += s.energy_charge;
        self.imbalance_charge += s.imbalance_charge;
        self.deviation_wh += s.deviation_wh;
    }

    /// BL-3: adds another bill (a participant's sites, a portfolio).
    pub fn add(&mut self, other: &Bill) {
        self.intervals += other.intervals;
        self.estimated += other.estimated;
        self.wh_bought += other.wh_bought;
        self.wh_sold += other.wh_sold;
        self.energy_charge += other.energy_charge;
        self.imbalance_charge += other.imbalance_charge;
        self.adjustments += other.adjustments;
        self.contracts += other.contracts;
        self.flexibility += other.flexibility;
        self.deviation_wh += other.deviation_wh;
    }

    /// BL-2.2: what the bill comes to (base units; positive: the participant pays).
    pub fn total(&self) -> i64 {
        self.energy_charge
            + self.imbalance_charge
            + self.adjustments
            + self.contracts
            + self.flexibility
    }
}

/// BL-4: one interval of an aggregator's portfolio with its deviations netted. Each site's
/// deviation `d` is valued at its own node's price `p`, and the penalty `π` applies once, to the
/// portfolio's net deviation: `(Σ d × p + π × |Σ d|) / 10⁶` base units, rounded half away from
/// zero. `sites` are `(deviation_wh, price)`.
pub fn netted_imbalance(sites: &[(i64, Price)], penalty: Price) -> i64 {
    let value: i128 = sites
        .iter()
        .map(|(d, p)| i128::from(*d) * i128::from(p.0))
        .sum();
    let net: i128 = sites.iter().map(|(d, _)| i128::from(*d)).sum();
    div_round_half_away(value + i128::from(penalty.0) * net.abs(), 1_000_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use bcte_types::Watts;

    fn settled(
        scheduled: i64,
        metered: Option<i64>,
        energy: i64,
        imbalance: i64,
    ) -> SiteSettlement {
        SiteSettlement {
            served: Watts(0),
            price: Price(80_000_000),
            scheduled_wh: scheduled,
            metered_wh: metered,
            deviation_wh: metered.map_or(0, |m| m - scheduled),
            energy_charge: energy,
            imbalance_charge: imbalance,
        }
    }

    #[test]
    fn a_bill_counts_metered_energy_and_estimated_schedules() {
        let mut b = Bill::default();
        b.add_interval(&settled(10, Some(12), 778, 200));
        b.add_interval(&settled(-500, None, -10_000, 0));
        b.add_interval(&settled(0, Some(-40), 0, -2_400));
        assert_eq!((b.intervals, b.estimated), (3, 1));
        assert_eq!((b.wh_bought, b.wh_sold), (12, 540));
        assert_eq!(
            (b.energy_charge, b.imbalance_charge, b.deviation_wh),
            (-9_222, -2_200, -38)
        );
        b.adjustments = -100;
        assert_eq!(b.total(), -9_222 - 2_200 - 100);
    }

    #[test]
    fn netting_charges_the_penalty_on_the_net_deviation_only() {
        // Worked by hand: +30 Wh at 80/MWh and −40 Wh at 60/MWh with π = 20/MWh. Charged per
        // site (ST-2.4): 30 × 100 = 3,000 and −40 × 40 = −1,600, 1,400 in all. Netted: value
        // 30 × 80 − 40 × 60 = 2,400 − 2,400 = 0, net −10 Wh, penalty 20 × 10 = 200.
        let sites = [(30, Price(80_000_000)), (-40, Price(60_000_000))];
        assert_eq!(netted_imbalance(&sites, Price(20_000_000)), 200);
        assert_eq!(
            crate::settle::imbalance_charge(30, Price(80_000_000), Price(20_000_000))
                + crate::settle::imbalance_charge(-40, Price(60_000_000), Price(20_000_000)),
            1_400
        );
        assert_eq!(netted_imbalance(&[], Price(20_000_000)), 0);
        // Half a base unit rounds away from zero: 1 Wh at 0.5/MWh.
        assert_eq!(netted_imbalance(&[(1, Price(500_000))], Price(0)), 1);
        assert_eq!(netted_imbalance(&[(-1, Price(500_000))], Price(0)), -1);
    }
}
