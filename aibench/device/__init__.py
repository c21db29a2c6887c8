"""What the machine is: device resolution, vendor peak tables, the environment fingerprint,
system descriptions, fp8 capability. Above core, below everything that measures."""
