use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::future::BoxFuture;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::error::{RateLimitError, Rejection};
use super::limiter::Admission;

/// The outcome of a call's first check in its response future.
pub(crate) enum Step {
    /// The call is admitted or rejected.
    Decided(Result<Admission, Rejection>),
    /// Wait mode delays the call by `wait`, then `again` checks it a second time.
    Wait {
        wait: Duration,
        again: BoxFuture<'static, Result<Admission, Rejection>>,
    },
}

pin_project! {
    /// The response future of [`RateLimit`](super::RateLimit): checks the call, then calls the
    /// inner service.
    pub struct ResponseFuture<S, Request>
    where
        S: Service<Request>,
    {
        #[pin]
        state: State<S, Request>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Request>
    where
        S: Service<Request>,
    {
        // The limiter is deciding; `service` is ready and `request` waits for the decision.
        Checking {
            check: BoxFuture<'static, Step>,
            // Boxed with the check, so that a call admitted at once, which never checks in its
            // future, does not carry and move the request's size.
            call: Option<Box<(S, Request)>>,
        },
        // Wait mode delays the call until its retry time. `service` is a clone that is not
        // ready, because the ready one was dropped to give back what its readiness reserved (a
        // concurrency permit, a buffer slot) for the length of the wait. After the sleep
        // (`sleep` is then `None`), the clone is made ready before `again` checks and charges
        // the call, so that a call is never charged while the inner service is not ready.
        Sleeping {
            sleep: Option<Pin<Box<tokio::time::Sleep>>>,
            again: Option<BoxFuture<'static, Result<Admission, Rejection>>>,
            call: Option<Box<(S, Request)>>,
        },
        // The call was admitted and the inner service is answering.
        Calling {
            #[pin]
            future: S::Future,
            admission: Option<Admission>,
        },
        // The call was rejected before it reached the inner service.
        Rejected {
            rejection: Option<Rejection>,
        },
    }
}

impl<S, Request> ResponseFuture<S, Request>
where
    S: Service<Request>,
{
    pub(crate) fn new(check: BoxFuture<'static, Step>, service: S, request: Request) -> Self {
        ResponseFuture {
            state: State::Checking {
                check,
                call: Some(Box::new((service, request))),
            },
        }
    }

    pub(crate) fn admitted(future: S::Future, admission: Admission) -> Self {
        ResponseFuture {
            state: State::Calling {
                future,
                admission: Some(admission),
            },
        }
    }

    /// Takes the admission of a call that reached the inner service, for the HTTP adapter and the
    /// `acquire` command. It is `None` before the decision, for a rejected call, and once taken.
    /// The inner service's response does not drop it.
    pub(crate) fn take_admission(self: Pin<&mut Self>) -> Option<Admission> {
        match self.project().state.project() {
            StateProj::Calling { admission, .. } => admission.take(),
            _ => None,
        }
    }

    pub(crate) fn rejected(rejection: Rejection) -> Self {
        ResponseFuture {
            state: State::Rejected {
                rejection: Some(rejection),
            },
        }
    }
}

impl<S, Request> Future for ResponseFuture<S, Request>
where
    S: Service<Request> + Clone,
{
    type Output = Result<S::Response, RateLimitError<S::Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Checking { check, call } => {
                    let decision = match ready!(check.as_mut().poll(cx)) {
                        Step::Decided(decision) => decision,
                        Step::Wait { wait, again } => {
                            let mut waiting = call
                                .take()
                                .expect("the call waits only once, after its first check");
                            let unready = waiting.0.clone();
                            drop(std::mem::replace(&mut waiting.0, unready));
                            this.state.set(State::Sleeping {
                                sleep: Some(Box::pin(tokio::time::sleep(wait))),
                                again: Some(again),
                                call: Some(waiting),
                            });
                            continue;
                        }
                    };
                    let admission = match decision {
                        Ok(admission) => admission,
                        Err(rejection) => {
                            tracing::trace!(reason = rejection.reason().as_str(), "call rejected");
                            return Poll::Ready(Err(RateLimitError::Rejected(rejection)));
                        }
                    };
                    let (mut service, request) = *call
                        .take()
                        .expect("the inner service is called only once, when admitted");
                    let future = service.call(request);
                    this.state.set(State::Calling {
                        future,
                        admission: Some(admission),
                    });
                }
                StateProj::Sleeping { sleep, again, call } => {
                    if let Some(timer) = sleep {
                        ready!(timer.as_mut().poll(cx));
                        *sleep = None;
                    }
                    let (service, _) = &mut **call
                        .as_mut()
                        .expect("a waiting call keeps its service until it is checked again");
                    if let Err(error) = ready!(service.poll_ready(cx)) {
                        return Poll::Ready(Err(RateLimitError::Service(error)));
                    }
                    let again = again
                        .take()
                        .expect("a waiting call is checked again only once");
                    let call = call.take();
                    this.state.set(State::Checking {
                        check: Box::pin(async move { Step::Decided(again.await) }),
                        call,
                    });
                }
                StateProj::Calling { future, .. } => {
                    return future.poll(cx).map_err(RateLimitError::Service);
                }
                StateProj::Rejected { rejection } => {
                    let rejection = rejection
                        .take()
                        .expect("a rejected ResponseFuture is polled after it completed");
                    return Poll::Ready(Err(RateLimitError::Rejected(rejection)));
                }
            }
        }
    }
}

impl<S, Request> std::fmt::Debug for ResponseFuture<S, Request>
where
    S: Service<Request>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
