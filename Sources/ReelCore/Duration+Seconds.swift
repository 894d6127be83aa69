extension Duration {
    /// The duration in seconds (a clock difference as a rate's denominator or a reported time).
    public var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) * 1e-18
    }
}
