public enum ReelIOPlaceholder {}
