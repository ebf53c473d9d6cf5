
tensorsseed*m
xFP32"#
shared_memory_region	fuzz_tail"
shared_memory_offsetP"
shared_memory_byte_size