// Intentionally empty: the target exists so SwiftPM builds the header module.
