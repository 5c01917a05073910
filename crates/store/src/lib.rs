//! Durable storage of bcte blocks, receipts and state behind a small Store trait: redb on disk, an in-memory twin for tests.
