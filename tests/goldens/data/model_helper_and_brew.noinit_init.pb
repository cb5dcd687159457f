
noinit_init