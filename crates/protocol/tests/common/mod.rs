//! Helpers shared by the protocol crate's test files; each uses only some.
#![allow(dead_code)]

pub mod streams;

/// A recorded stream or body under `tests/fixtures/`. The crate's folder is
/// read when the test runs (cargo sets it), not when it was compiled: a test
/// binary reused from a build elsewhere (a shared target folder) still finds
/// the files of the tree it runs in.
pub fn fixture(name: &str) -> String {
    let dir = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    let path = format!("{dir}/tests/fixtures/{name}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A small deterministic PRNG (xorshift64*), so generated cases are reproducible.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// Up to five sorted cut points in `0..=len`, to split a stream into reads.
    pub fn cuts(&mut self, len: usize) -> Vec<usize> {
        let mut cuts: Vec<usize> = (0..self.below(6))
            .map(|_| self.below(len as u64 + 1) as usize)
            .collect();
        cuts.sort();
        cuts
    }
}
