//! Congestion-aware clearing of price-flexibility curves on a radial distribution feeder.
