/* FNV-1a, in C, so every target build exercises its C cross compiler. */
#include <stddef.h>
#include <stdint.h>

uint32_t rustle_fnv1a(const unsigned char *data, size_t len) {
    uint32_t hash = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        hash ^= data[i];
        hash *= 16777619u;
    }
    return hash;
}
