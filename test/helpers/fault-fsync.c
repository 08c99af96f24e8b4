/*
 * LD_PRELOAD shim for thinsim's tests: makes one fsync()/fdatasync() of one named file
 * fail with EIO, as a disk whose writeback failed would make it.
 *
 *   THINSIM_FAULT_FILE  path of the file whose sync fails (compared by device and inode)
 *   THINSIM_FAULT_ARM   path of a trigger file: nothing fails until it exists
 *   THINSIM_FAULT_LOG   optional: a line is appended here when the fault fires
 *
 * It fires once per process; every other call goes to the C library. Built by
 * test/helpers/fault-shim.ts with `cc -shared -fPIC`.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int fired;

static int should_fail(int fd, const char *call) {
  const char *target = getenv("THINSIM_FAULT_FILE");
  const char *arm = getenv("THINSIM_FAULT_ARM");
  struct stat a, b;
  if (!target || !arm || __atomic_load_n(&fired, __ATOMIC_SEQ_CST)) return 0;
  if (access(arm, F_OK) != 0) return 0;
  if (fstat(fd, &a) != 0 || stat(target, &b) != 0) return 0;
  if (a.st_dev != b.st_dev || a.st_ino != b.st_ino) return 0;
  int expected = 0;
  if (!__atomic_compare_exchange_n(&fired, &expected, 1, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) return 0;
  const char *log = getenv("THINSIM_FAULT_LOG");
  if (log) {
    FILE *f = fopen(log, "a");
    if (f) {
      fprintf(f, "%s(%d) on %s: EIO\n", call, fd, target);
      fclose(f);
    }
  }
  return 1;
}

int fsync(int fd) {
  static int (*real)(int);
  if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
  if (should_fail(fd, "fsync")) {
    errno = EIO;
    return -1;
  }
  return real(fd);
}

int fdatasync(int fd) {
  static int (*real)(int);
  if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
  if (should_fail(fd, "fdatasync")) {
    errno = EIO;
    return -1;
  }
  return real(fd);
}
