import SerialLoop
