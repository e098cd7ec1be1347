//! Top-up orders and the payment events that change them.
//!
//! An order is written (`pending`) before the processor is asked for a
//! checkout or an invoice, so no payment can arrive for an order Tollgate
//! does not know. Every change a processor reports goes through
//! [`Store::apply_payment`]: one transaction records the event's id, moves
//! the order's state and writes the ledger entry that credits (or, for a
//! refund, debits) the balance. The event id makes a replay change nothing;
//! the state move (`pending → paid` happens once) and the ledger's unique
//! `request_id` (`order:ID`) make a second report of the same payment under
//! another event id (a reconciliation, a resent event) change nothing too.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::users::{user_from_row, USER_COLUMNS};
use crate::{now_ms, Result, Store, StoreError};

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderState {
    /// Made; waiting for the payment (or for a delayed method to clear).
    Pending,
    /// Paid and credited.
    Paid,
    /// The checkout ended unpaid.
    Expired,
    /// The payment failed, or the processor could not open the order.
    Failed,
    /// Paid, then refunded in full (a partial refund stays `paid`).
    Refunded,
}

impl OrderState {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Pending => "pending",
            OrderState::Paid => "paid",
            OrderState::Expired => "expired",
            OrderState::Failed => "failed",
            OrderState::Refunded => "refunded",
        }
    }

    pub fn parse(text: &str) -> Option<OrderState> {
        Some(match text {
            "pending" => OrderState::Pending,
            "paid" => OrderState::Paid,
            "expired" => OrderState::Expired,
            "failed" => OrderState::Failed,
            "refunded" => OrderState::Refunded,
            _ => return None,
        })
    }
}

/// A recharge order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Order {
    pub id: i64,
    pub user_id: i64,
    /// The processor (`stripe`).
    pub provider: String,
    /// How it is paid: `checkout` or `invoice`.
    pub method: String,
    pub state: OrderState,
    /// ISO 4217, lower case, as Stripe writes it.
    pub currency: String,
    /// What the user pays, in the currency's minor units.
    pub amount: i64,
    /// What the payment credits, nano-USD, `bonus` included.
    pub credit: i64,
    pub bonus: i64,
    /// Refunded so far, minor units, and the credit taken back for it.
    pub refunded_amount: i64,
    pub refunded_credit: i64,
    /// The processor's object: a Checkout Session or an Invoice id.
    pub external_id: Option<String>,
    /// The processor's payment (a PaymentIntent id), once paid: refunds name it.
    pub payment_id: Option<String>,
    /// Where the user pays: the checkout page or the hosted invoice.
    pub pay_url: Option<String>,
    /// The invoice's PDF, for invoices.
    pub receipt_url: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub paid_at: Option<i64>,
}

/// An order to make.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub user_id: i64,
    pub provider: String,
    pub method: String,
    pub currency: String,
    pub amount: i64,
    pub credit: i64,
    pub bonus: i64,
}

/// Which orders to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub user_id: Option<i64>,
    pub state: Option<OrderState>,
    /// Only orders with a smaller id (the next page).
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// A processor's event, as recorded.
#[derive(Debug, Clone)]
pub struct PaymentEvent {
    pub provider: String,
    /// The processor's event id (`evt_…`), or a reconciliation's own
    /// (`reconcile:…`).
    pub id: String,
    /// The event's type, e.g. `checkout.session.completed`.
    pub kind: String,
}

/// What an event reports about an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentChange {
    /// The money arrived: credit the order (once).
    Paid { payment_id: Option<String> },
    /// The checkout ended unpaid.
    Expired,
    /// The payment failed.
    Failed,
    /// `refunded_total` minor units of the order have been refunded so
    /// far (the processor's cumulative figure): take back the credit of
    /// what was not taken back yet.
    Refunded { refunded_total: i64 },
    /// Nothing for the order (an event type that changes nothing, or a
    /// `completed` checkout still waiting for a delayed payment).
    Nothing,
}

/// What [`Store::apply_payment`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The event id was applied before: nothing changed.
    Duplicate,
    /// The order changed (and the balance, for a payment or a refund).
    Changed(Order),
    /// The order was already past this change: nothing changed.
    Unchanged(Order),
    /// The event names no order of ours: recorded, nothing changed.
    NoOrder,
}

/// Paid orders of one UTC day in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaidDay {
    /// Days since 1970-01-01.
    pub day: i64,
    pub currency: String,
    pub orders: i64,
    pub amount: i64,
    pub credit: i64,
    pub refunded_amount: i64,
}

const ORDER_COLUMNS: &str = "id, user_id, provider, method, state, currency, amount, credit, \
    bonus, refunded_amount, refunded_credit, external_id, payment_id, pay_url, receipt_url, \
    created_at, updated_at, paid_at";

fn order_from_row(row: &AnyRow) -> Result<Order> {
    let state: String = row.try_get("state")?;
    Ok(Order {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        provider: row.try_get("provider")?,
        method: row.try_get("method")?,
        state: OrderState::parse(&state)
            .ok_or_else(|| StoreError::Json(format!("unknown order state {state:?}")))?,
        currency: row.try_get("currency")?,
        amount: row.try_get("amount")?,
        credit: row.try_get("credit")?,
        bonus: row.try_get("bonus")?,
        refunded_amount: row.try_get("refunded_amount")?,
        refunded_credit: row.try_get("refunded_credit")?,
        external_id: row.try_get("external_id")?,
        payment_id: row.try_get("payment_id")?,
        pay_url: row.try_get("pay_url")?,
        receipt_url: row.try_get("receipt_url")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        paid_at: row.try_get("paid_at")?,
    })
}

/// The credit to take back when `refunded` of an order's `amount` has
/// been refunded: the same share of its `credit`, rounded down (a full
/// refund takes back exactly the credit).
pub fn refund_credit(order_credit: i64, order_amount: i64, refunded: i64) -> i64 {
    if order_amount <= 0 || refunded <= 0 {
        return 0;
    }
    let refunded = refunded.min(order_amount);
    // i128: credit (≤ 1e18) × amount cannot overflow it.
    (order_credit as i128 * refunded as i128 / order_amount as i128) as i64
}

impl Store {
    /// Writes a `pending` order before the processor is asked to open it.
    pub async fn insert_order(&self, new: &NewOrder) -> Result<Order> {
        let now = now_ms();
        let sql = format!(
            "INSERT INTO payment_orders (user_id, provider, method, state, currency, amount, \
             credit, bonus, created_at, updated_at) \
             VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7, $8, $8) RETURNING {ORDER_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(new.user_id)
            .bind(&new.provider)
            .bind(&new.method)
            .bind(&new.currency)
            .bind(new.amount)
            .bind(new.credit)
            .bind(new.bonus)
            .bind(now)
            .fetch_one(&self.writer)
            .await?;
        order_from_row(&row)
    }

    /// Records the processor's object for a pending order, and where to pay.
    pub async fn order_opened(
        &self,
        id: i64,
        external_id: &str,
        pay_url: &str,
        receipt_url: Option<&str>,
    ) -> Result<Order> {
        let sql = format!(
            "UPDATE payment_orders SET external_id = $1, pay_url = $2, receipt_url = $3, \
             updated_at = $4 WHERE id = $5 RETURNING {ORDER_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(external_id)
            .bind(pay_url)
            .bind(receipt_url)
            .bind(now_ms())
            .bind(id)
            .fetch_optional(&self.writer)
            .await?
            .ok_or(StoreError::NotFound("order"))?;
        order_from_row(&row)
    }

    /// Marks a pending order the processor would not open as `failed`.
    pub async fn order_not_opened(&self, id: i64) -> Result<()> {
        sqlx::query(
            "UPDATE payment_orders SET state = 'failed', updated_at = $1 \
             WHERE id = $2 AND state = 'pending' AND external_id IS NULL",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub async fn get_order(&self, id: i64) -> Result<Order> {
        let sql = format!("SELECT {ORDER_COLUMNS} FROM payment_orders WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("order"))?;
        order_from_row(&row)
    }

    /// The order a processor's object (session, invoice) belongs to.
    pub async fn order_by_external(&self, provider: &str, external_id: &str) -> Result<Order> {
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM payment_orders WHERE provider = $1 AND external_id = $2"
        );
        let row = sqlx::query(&sql)
            .bind(provider)
            .bind(external_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("order"))?;
        order_from_row(&row)
    }

    /// The order a processor's payment (a PaymentIntent) paid.
    pub async fn order_by_payment(&self, provider: &str, payment_id: &str) -> Result<Order> {
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM payment_orders WHERE provider = $1 AND payment_id = $2"
        );
        let row = sqlx::query(&sql)
            .bind(provider)
            .bind(payment_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("order"))?;
        order_from_row(&row)
    }

    /// Orders, newest first.
    pub async fn list_orders(&self, filter: &OrderFilter) -> Result<Vec<Order>> {
        let mut sql = format!("SELECT {ORDER_COLUMNS} FROM payment_orders WHERE 1 = 1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if filter.user_id.is_some() {
            sql += &format!(" AND user_id = {}", next());
        }
        if filter.state.is_some() {
            sql += &format!(" AND state = {}", next());
        }
        if filter.before_id.is_some() {
            sql += &format!(" AND id < {}", next());
        }
        sql += &format!(" ORDER BY id DESC LIMIT {}", next());
        let mut query = sqlx::query(&sql);
        if let Some(user) = filter.user_id {
            query = query.bind(user);
        }
        if let Some(state) = filter.state {
            query = query.bind(state.as_str());
        }
        if let Some(before) = filter.before_id {
            query = query.bind(before);
        }
        let rows = query
            .bind(filter.limit.clamp(1, 500))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(order_from_row).collect()
    }

    /// Orders paid since `since_ms`, per UTC day of payment and currency,
    /// newest day first (refunds counted on the day the order was paid).
    pub async fn paid_by_day(&self, since_ms: i64) -> Result<Vec<PaidDay>> {
        let rows = sqlx::query(
            "SELECT paid_at / 86400000 AS day, currency, COUNT(*) AS orders, \
             CAST(SUM(amount) AS BIGINT) AS amount, CAST(SUM(credit) AS BIGINT) AS credit, \
             CAST(SUM(refunded_amount) AS BIGINT) AS refunded \
             FROM payment_orders WHERE paid_at IS NOT NULL AND paid_at >= $1 \
             GROUP BY paid_at / 86400000, currency ORDER BY day DESC, currency",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PaidDay {
                    day: row.try_get("day")?,
                    currency: row.try_get("currency")?,
                    orders: row.try_get("orders")?,
                    amount: row.try_get("amount")?,
                    credit: row.try_get("credit")?,
                    refunded_amount: row.try_get("refunded")?,
                })
            })
            .collect()
    }

    /// The user's customer at `provider`, if one was made.
    pub async fn customer_of(&self, user_id: i64, provider: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT customer_id FROM payment_customers WHERE user_id = $1 AND provider = $2",
        )
        .bind(user_id)
        .bind(provider)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Keeps `customer_id` as the user's customer, unless another request
    /// kept one first: returns the one kept.
    pub async fn keep_customer(
        &self,
        user_id: i64,
        provider: &str,
        customer_id: &str,
    ) -> Result<String> {
        sqlx::query(
            "INSERT INTO payment_customers (user_id, provider, customer_id, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, provider) DO NOTHING",
        )
        .bind(user_id)
        .bind(provider)
        .bind(customer_id)
        .bind(now_ms())
        .execute(&self.writer)
        .await?;
        Ok(sqlx::query_scalar(
            "SELECT customer_id FROM payment_customers WHERE user_id = $1 AND provider = $2",
        )
        .bind(user_id)
        .bind(provider)
        .fetch_one(&self.writer)
        .await?)
    }

    /// Applies what a processor's event says about an order, exactly once:
    /// see the module's comment. `order_id` is `None` when the event names
    /// no order of ours (it is still recorded).
    pub async fn apply_payment(
        &self,
        event: &PaymentEvent,
        order_id: Option<i64>,
        change: &PaymentChange,
    ) -> Result<Applied> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let recorded = sqlx::query(
            "INSERT INTO payment_events (provider, event_id, kind, order_id, outcome, received_at) \
             VALUES ($1, $2, $3, $4, '', $5) ON CONFLICT (provider, event_id) DO NOTHING",
        )
        .bind(&event.provider)
        .bind(&event.id)
        .bind(&event.kind)
        .bind(order_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if recorded.rows_affected() == 0 {
            return Ok(Applied::Duplicate);
        }
        let Some(order_id) = order_id else {
            set_outcome(&mut tx, event, "no order").await?;
            tx.commit().await?;
            return Ok(Applied::NoOrder);
        };
        // Touching the row first locks it (PostgreSQL) for the rest of the
        // transaction, so the state read below is the one this transaction
        // changes; SQLite has a single writer anyway.
        let touched = sqlx::query("UPDATE payment_orders SET updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(order_id)
            .execute(&mut *tx)
            .await?;
        if touched.rows_affected() == 0 {
            set_outcome(&mut tx, event, "no order").await?;
            tx.commit().await?;
            return Ok(Applied::NoOrder);
        }
        let order = order_in(&mut tx, order_id).await?;
        let outcome = match change {
            PaymentChange::Paid { payment_id } => pay(&mut tx, &order, payment_id, now).await?,
            PaymentChange::Expired => end_unpaid(&mut tx, &order, OrderState::Expired, now).await?,
            PaymentChange::Failed => end_unpaid(&mut tx, &order, OrderState::Failed, now).await?,
            PaymentChange::Refunded { refunded_total } => {
                refund(&mut tx, &order, *refunded_total).await?
            }
            PaymentChange::Nothing => false,
        };
        set_outcome(
            &mut tx,
            event,
            if outcome { "applied" } else { "unchanged" },
        )
        .await?;
        let after = order_in(&mut tx, order_id).await?;
        tx.commit().await?;
        Ok(if outcome {
            Applied::Changed(after)
        } else {
            Applied::Unchanged(after)
        })
    }

    /// The kinds and outcomes of the events applied to an order, oldest first.
    pub async fn order_events(&self, order_id: i64) -> Result<Vec<(String, String, String)>> {
        Ok(sqlx::query_as(
            "SELECT event_id, kind, outcome FROM payment_events WHERE order_id = $1 \
             ORDER BY received_at, event_id",
        )
        .bind(order_id)
        .fetch_all(&self.pool)
        .await?)
    }
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

async fn order_in(tx: &mut Tx<'_>, id: i64) -> Result<Order> {
    let sql = format!("SELECT {ORDER_COLUMNS} FROM payment_orders WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_one(&mut **tx).await?;
    order_from_row(&row)
}

async fn set_outcome(tx: &mut Tx<'_>, event: &PaymentEvent, outcome: &str) -> Result<()> {
    sqlx::query("UPDATE payment_events SET outcome = $1 WHERE provider = $2 AND event_id = $3")
        .bind(outcome)
        .bind(&event.provider)
        .bind(&event.id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Credits a payment: the order becomes `paid` and the balance gains its
/// credit, in one ledger entry naming the order. Money that arrives is
/// credited even for an order that had expired or failed.
async fn pay(
    tx: &mut Tx<'_>,
    order: &Order,
    payment_id: &Option<String>,
    now: i64,
) -> Result<bool> {
    if matches!(order.state, OrderState::Paid | OrderState::Refunded) {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE payment_orders SET state = 'paid', paid_at = $1, \
         payment_id = COALESCE($2, payment_id) WHERE id = $3",
    )
    .bind(now)
    .bind(payment_id.as_deref())
    .bind(order.id)
    .execute(&mut **tx)
    .await?;
    let reason = format!(
        "top-up order #{} ({} {})",
        order.id, order.provider, order.method
    );
    let request_id = format!("order:{}", order.id);
    ledger_change(
        tx,
        order.user_id,
        order.credit,
        "topup",
        &reason,
        &request_id,
    )
    .await?;
    Ok(true)
}

/// Ends a pending order unpaid.
async fn end_unpaid(tx: &mut Tx<'_>, order: &Order, to: OrderState, now: i64) -> Result<bool> {
    if order.state != OrderState::Pending {
        return Ok(false);
    }
    sqlx::query("UPDATE payment_orders SET state = $1, updated_at = $2 WHERE id = $3")
        .bind(to.as_str())
        .bind(now)
        .bind(order.id)
        .execute(&mut **tx)
        .await?;
    Ok(true)
}

/// Takes back the credit of what was refunded since the last refund. The
/// balance may go below zero: the user then owes it.
async fn refund(tx: &mut Tx<'_>, order: &Order, refunded_total: i64) -> Result<bool> {
    if !matches!(order.state, OrderState::Paid | OrderState::Refunded) {
        return Ok(false);
    }
    let refunded_total = refunded_total.min(order.amount);
    if refunded_total <= order.refunded_amount {
        return Ok(false);
    }
    let taken_back = refund_credit(order.credit, order.amount, refunded_total);
    let debit = taken_back - order.refunded_credit;
    let state = if refunded_total == order.amount {
        OrderState::Refunded
    } else {
        OrderState::Paid
    };
    sqlx::query(
        "UPDATE payment_orders SET refunded_amount = $1, refunded_credit = $2, state = $3 \
         WHERE id = $4",
    )
    .bind(refunded_total)
    .bind(taken_back)
    .bind(state.as_str())
    .bind(order.id)
    .execute(&mut **tx)
    .await?;
    if debit > 0 {
        let reason = format!(
            "refund of top-up order #{} ({} of {} {} refunded)",
            order.id,
            refunded_total,
            order.amount,
            order.currency.to_uppercase()
        );
        let request_id = format!("refund:{}:{}", order.id, refunded_total);
        ledger_change(tx, order.user_id, -debit, "refund", &reason, &request_id).await?;
    }
    Ok(true)
}

/// Changes the paid balance by `amount` (no floor: a refund may leave it
/// owed) and appends the ledger entry.
async fn ledger_change(
    tx: &mut Tx<'_>,
    user_id: i64,
    amount: i64,
    kind: &str,
    reason: &str,
    request_id: &str,
) -> Result<()> {
    let sql = format!(
        "UPDATE users SET balance = balance + $1, revision = revision + 1 WHERE id = $2 \
         RETURNING {USER_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(amount)
        .bind(user_id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound("user"))?;
    let user = user_from_row(&row)?;
    sqlx::query(
        "INSERT INTO ledger (user_id, amount, balance_after, kind, reason, request_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(user_id)
    .bind(amount)
    .bind(user.balance + user.free_balance)
    .bind(kind)
    .bind(reason)
    .bind(request_id)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::refund_credit;

    #[test]
    fn a_refund_takes_back_its_share_of_the_credit() {
        assert_eq!(
            refund_credit(105_000_000_000, 10_000, 10_000),
            105_000_000_000
        );
        assert_eq!(
            refund_credit(105_000_000_000, 10_000, 2_500),
            26_250_000_000
        );
        assert_eq!(refund_credit(100, 3, 1), 33);
        assert_eq!(refund_credit(100, 3, 5), 100);
        assert_eq!(refund_credit(100, 0, 5), 0);
        // A balance's largest credit against a large amount: no overflow.
        assert_eq!(
            refund_credit(1_000_000_000_000_000_000, 99_999_999, 99_999_999),
            1_000_000_000_000_000_000
        );
    }
}
