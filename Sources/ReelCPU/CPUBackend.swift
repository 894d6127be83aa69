public enum ReelCPUPlaceholder {}
