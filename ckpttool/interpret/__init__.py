"""Map a checkpoint's raw tree to meaning: networks, optimizer, scheduler, counters and the rest."""
