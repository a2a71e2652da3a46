/* The sandbox ("pause") container of every pod: holds the pod's namespaces open, does
 * nothing else, and exits promptly on SIGTERM/SIGINT. Built static into a scratch image by
 * scripts/infra/base-image.sh because no registry image can be pulled here. It is PID 1 of
 * its PID namespace, so it also reaps zombies. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_term(int sig) { (void)sig; _exit(0); }
static void on_chld(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }

int main(void) {
    struct sigaction term = {0}, chld = {0};
    term.sa_handler = on_term;
    chld.sa_handler = on_chld;
    chld.sa_flags = SA_NOCLDSTOP;
    sigaction(SIGTERM, &term, 0);
    sigaction(SIGINT, &term, 0);
    sigaction(SIGCHLD, &chld, 0);
    for (;;) pause();
}
