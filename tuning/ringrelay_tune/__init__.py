"""Host tuning for ringrelay. Modules, one per concern:

- fsroot:   every file access, through the --root prefix; CPU list and mask formats
- cpus:     CPU topology and the split between relay workers and NIC interrupts
- settings: the catalogue (recommended value, severity, reason), readers and appliers
- state:    the originals file that makes revert exact
- persist:  sysctl.d and systemd drop-ins, the boot unit
- cli:      the verbs
"""
