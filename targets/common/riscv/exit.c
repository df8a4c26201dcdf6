/* exit.c - the semihosting exit for start.S (an inline function cannot be called from assembly). */
#include "semihost.h"

void nncc_exit(int status);
void nncc_exit(int status) { nncc_sh_exit(status); }
