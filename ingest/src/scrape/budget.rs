//! The memory a pass may hold in response bodies, whatever its targets send: a semaphore whose
//! permits are bytes (`tokio::sync::Semaphore`), shared by every body in flight.
//!
//! ```text
//!  chunk from a target ─▶ Charge::grow(bytes × factor) ─fits─▶ parser / metrics reader
//!                                   └─ budget used up ─▶ wait (bounded) ─▶ or fail the body
//!  snapshot parsed ─▶ Charge::shrink_to(its size) ─▶ rows folded into the chunk ─▶ drop: released
//! ```
//!
//! A body holds a [`Charge`] that grows as its chunks arrive and is released when what it
//! became (a snapshot) has been folded into rows. Waiting is what makes a busy pass slow down
//! instead of growing; two rules keep waiting from turning into a standstill where every body
//! holds part of the budget and waits for more:
//! - a body holding at most its [`MemoryBudget::guaranteed`] share (the budget over twice the
//!   concurrency) may wait for the target's whole timeout: all bodies together holding only
//!   that share leave half the budget free, so one of them always gets through;
//! - a larger body waits at most [`PATIENCE`] and then fails ("memory budget used up"), which
//!   releases what it held. Hostile bodies (endless ones, bombs) are the large ones: they hit
//!   their size cap or this rule within moments and give their share back.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a body beyond its guaranteed share waits for memory before it fails.
pub const PATIENCE: Duration = Duration::from_secs(1);

/// A budget of bytes shared by the bodies of one pass.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    sem: Arc<Semaphore>,
    total: usize,
    guaranteed: usize,
    peak: Arc<AtomicUsize>,
}

/// Why a charge could not grow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetExhausted {
    #[error(
        "memory budget of {total} bytes used up by the bodies in flight (this one held {held})"
    )]
    Busy { total: usize, held: usize },
    #[error("this body alone would take more than the memory budget of {total} bytes")]
    TooLarge { total: usize },
}

impl MemoryBudget {
    /// `total` bytes shared by at most `concurrency` bodies at a time.
    pub fn new(total: usize, concurrency: usize) -> Self {
        // The semaphore counts in u32 per acquisition and caps its permits; a budget beyond
        // 4 GiB would not fit a CronJob anyway.
        let total = total.clamp(1, u32::MAX as usize);
        MemoryBudget {
            sem: Arc::new(Semaphore::new(total)),
            total,
            guaranteed: total / (2 * concurrency.max(1)),
            peak: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// What one body may hold and still wait for more as long as its target's timeout allows.
    pub fn guaranteed(&self) -> usize {
        self.guaranteed
    }

    /// Bytes held now.
    pub fn in_use(&self) -> usize {
        self.total - self.sem.available_permits()
    }

    /// Most bytes held at once so far.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// An empty charge.
    pub fn charge(&self) -> Charge {
        Charge {
            budget: self.clone(),
            permit: None,
        }
    }
}

/// Bytes one body holds of a [`MemoryBudget`]; released on drop.
#[derive(Debug)]
pub struct Charge {
    budget: MemoryBudget,
    permit: Option<OwnedSemaphorePermit>,
}

impl Charge {
    pub fn bytes(&self) -> usize {
        self.permit.as_ref().map_or(0, |p| p.num_permits())
    }

    fn add(&mut self, p: OwnedSemaphorePermit) {
        match &mut self.permit {
            Some(held) => held.merge(p),
            None => self.permit = Some(p),
        }
        let used = self.budget.in_use();
        self.budget.peak.fetch_max(used, Ordering::Relaxed);
    }

    /// Hold `n` more bytes, waiting for them at most `timeout` (and at most [`PATIENCE`] once
    /// this charge is past its guaranteed share).
    pub async fn grow(&mut self, n: usize, timeout: Duration) -> Result<(), BudgetExhausted> {
        let held = self.bytes();
        self.grow_as(n, held, timeout).await
    }

    /// Take the charges of `other` into this one.
    pub fn absorb(&mut self, mut other: Charge) {
        if let Some(p) = other.permit.take() {
            match &mut self.permit {
                Some(held) => held.merge(p),
                None => self.permit = Some(p),
            }
        }
    }

    /// [`Charge::grow`] for a body that holds `held` bytes in all (this charge may be only the
    /// part of it still in the fetch's hands).
    pub async fn grow_as(
        &mut self,
        n: usize,
        held: usize,
        timeout: Duration,
    ) -> Result<(), BudgetExhausted> {
        if n == 0 {
            return Ok(());
        }
        let total = self.budget.total;
        let (Ok(n32), true) = (u32::try_from(n), held + n <= total) else {
            return Err(BudgetExhausted::TooLarge { total });
        };
        let exhausted = BudgetExhausted::Busy { total, held };
        if let Ok(p) = self.budget.sem.clone().try_acquire_many_owned(n32) {
            self.add(p);
            return Ok(());
        }
        let wait = if held + n <= self.budget.guaranteed {
            timeout
        } else {
            timeout.min(PATIENCE)
        };
        match tokio::time::timeout(wait, self.budget.sem.clone().acquire_many_owned(n32)).await {
            Ok(Ok(p)) => {
                self.add(p);
                Ok(())
            }
            _ => Err(exhausted),
        }
    }

    /// Give back all but `n` bytes (no-op when holding `n` or less).
    pub fn shrink_to(&mut self, n: usize) {
        if let Some(p) = &mut self.permit {
            let excess = p.num_permits().saturating_sub(n);
            if excess > 0 {
                drop(p.split(excess));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn charges_add_up_wait_and_release() {
        let b = MemoryBudget::new(1000, 2);
        assert_eq!(b.guaranteed(), 250);
        let mut a = b.charge();
        a.grow(600, Duration::from_secs(5)).await.unwrap();
        assert_eq!((a.bytes(), b.in_use()), (600, 600));
        // More than the whole budget can never fit: refused at once.
        let mut big = b.charge();
        assert_eq!(
            big.grow(1001, Duration::from_secs(5)).await,
            Err(BudgetExhausted::TooLarge { total: 1000 })
        );
        let mut c = b.charge();
        c.grow(300, Duration::from_secs(5)).await.unwrap();
        // A small charge waits until `a` gives memory back.
        let waiter = {
            let b2 = b.clone();
            tokio::spawn(async move {
                let mut c2 = b2.charge();
                c2.grow(200, Duration::from_secs(5))
                    .await
                    .map(|_| c2.bytes())
            })
        };
        tokio::task::yield_now().await;
        a.shrink_to(100);
        assert_eq!(waiter.await.unwrap(), Ok(200));
        assert_eq!(b.peak(), 900);
        // Past its guaranteed share a charge waits PATIENCE at most, then fails.
        let mut hog = b.charge();
        hog.grow(600, Duration::from_secs(5)).await.unwrap();
        let t0 = std::time::Instant::now();
        let err = c.grow(200, Duration::from_secs(30)).await.unwrap_err();
        assert_eq!(
            err,
            BudgetExhausted::Busy {
                total: 1000,
                held: 300
            }
        );
        assert!(t0.elapsed() < Duration::from_secs(5));
        drop((a, c, hog));
        assert_eq!(b.in_use(), 0);
    }
}
