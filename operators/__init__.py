"""Neural operators for problem families (FNO, ST-FNO, WoS-NO, EquiNO): see the open issues."""
