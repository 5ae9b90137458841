/*
 * bcryptprimitives.dll shim for running Rust Windows binaries under Wine 8.
 *
 * Rust's std (since 1.78) imports ProcessPrng from bcryptprimitives.dll for
 * its random numbers (HashMap seeds). Wine 8.0 has no such DLL, so every Rust
 * program fails to load ("bcryptprimitives.dll not found", exit 53). This DLL
 * exports ProcessPrng and forwards to RtlGenRandom (advapi32's
 * SystemFunction036), which Wine implements.
 *
 * Built by rustle-engine (runner.rs) with x86_64-w64-mingw32-gcc and placed in
 * the Wine prefix's system32; never shipped with user binaries.
 */
#include <windows.h>

/* RtlGenRandom; declared here rather than via <ntsecapi.h> to stay
 * independent of the mingw headers' version. */
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

/* Fills `data` with `len` random bytes. Like the real one, it never fails in
 * practice; a FALSE tells the caller the bytes are not random. */
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk)) {
            return FALSE;
        }
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
    (void)instance;
    (void)reason;
    (void)reserved;
    return TRUE;
}
