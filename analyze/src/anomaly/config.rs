//! The configuration of the STL + Isolation Forest detector ([`StlIfConfig`]) and its defaults.

use super::iforest::IForestParams;
use super::stl::StlParams;

/// Configuration of the STL + Isolation Forest detector. Durations in seconds or minutes as
/// named; growth in goroutines per second.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StlIfConfig {
    /// Grid the raw samples are binned on (mean per bin, linear interpolation across gaps).
    pub grid_step_s: i64,
    /// Grid STL and the features run on (mean of the 1-minute bins).
    pub stl_step_s: i64,
    /// Seasonal period (a day).
    pub period_s: i64,
    /// History the STL fit and the forest see (at each anchor).
    pub window_s: i64,
    /// History the growth rules see at each evaluation (≥ a day and a half: the day-over-day
    /// tests look 24 h + 6 h back).
    pub eval_window_s: i64,
    /// STL and the forest are refitted at multiples of this (cached in between; 3 h: a 7-day
    /// replay every 5 minutes then costs ~56 fits per series).
    pub refit_every_s: i64,
    pub stl: StlParams,
    pub forest: IForestParams,
    /// 5-minute points a life needs at the anchor before a forest is fitted.
    pub min_train_points: usize,
    /// The gate passes when the IF score at now ≥ this quantile of the training scores.
    pub if_gate_quantile: f64,
    /// A sample below `reset_ratio` × the previous one (and at least `reset_min_drop` lower)
    /// starts a new life (pod restart / counter reset).
    pub reset_ratio: f64,
    pub reset_min_drop: f64,
    /// A gap longer than this starts a new life as well.
    pub max_gap_s: i64,
    /// No sample for this long before now: not evaluated.
    pub stale_s: i64,
    /// Fewer finite samples than this in the window: not evaluated.
    pub min_points: usize,
    pub fast_span_min: usize,
    pub fast_blocks: usize,
    pub fast_min_growth_per_s: f64,
    pub fast_min_rise_sigma: f64,
    /// Smallest share of the rise each fast-rule step must carry (a step then flat fails).
    pub fast_min_step_share: f64,
    pub slow_horizon_min: usize,
    pub slow_min_span_min: usize,
    pub slow_block_min: usize,
    pub slow_min_growth_per_s: f64,
    pub slow_min_share_up: f64,
    pub slow_min_rise_sigma: f64,
    /// Largest share of the total rise a single block-to-block step may carry.
    pub max_step_share: f64,
    pub young_min_rise_frac: f64,
    /// Pod younger than a day, slow rule: the rise must also have lasted this long (longer than
    /// any daily ramp: a daily cycle rises for half a day at most).
    pub young_long_min: usize,
    /// Pod younger than a day, quick rule: over `young_quick_min`, steady growth of at least
    /// `young_quick_rise_frac` x the highest level the life had before (a daily cycle raises the
    /// level by a third of its mean in two hours at most, even with a 4x day/night swing).
    pub young_quick_min: usize,
    pub young_quick_rise_frac: f64,
    pub dod_min_frac: f64,
    pub sawtooth_min_cycles: usize,
    pub sawtooth_min_life_min: usize,
    /// Slope horizons of the features, minutes.
    pub horizons_min: [usize; 3],
}

impl Default for StlIfConfig {
    fn default() -> Self {
        Self {
            grid_step_s: 60,
            stl_step_s: 300,
            period_s: 86_400,
            window_s: 4 * 86_400,
            eval_window_s: 2 * 86_400,
            refit_every_s: 3 * 3_600,
            stl: StlParams::default(),
            forest: IForestParams::default(),
            min_train_points: 24,
            if_gate_quantile: 0.5,
            reset_ratio: 0.5,
            reset_min_drop: 5.0,
            max_gap_s: 1_800,
            stale_s: 900,
            min_points: 10,
            fast_span_min: 10,
            fast_blocks: 5,
            fast_min_growth_per_s: 0.5,
            fast_min_rise_sigma: 6.0,
            fast_min_step_share: 0.1,
            slow_horizon_min: 360,
            slow_min_span_min: 120,
            slow_block_min: 30,
            slow_min_growth_per_s: 0.2 / 60.0,
            slow_min_share_up: 0.8,
            slow_min_rise_sigma: 4.0,
            max_step_share: 0.5,
            young_min_rise_frac: 0.5,
            young_long_min: 18 * 60,
            young_quick_min: 120,
            young_quick_rise_frac: 1.0,
            dod_min_frac: 0.5,
            sawtooth_min_cycles: 2,
            sawtooth_min_life_min: 20,
            horizons_min: [15, 60, 360],
        }
    }
}
