//! Every text of the console, once per language (English and Chinese, as
//! OhMyGPT serves both).

pub struct Texts {
    pub lang: &'static str,
    pub other_lang: &'static str,
    pub other_lang_name: &'static str,
    pub log_in: &'static str,
    pub logout: &'static str,
    pub name_or_email: &'static str,
    pub password: &'static str,
    pub wrong_login: &'static str,
    /// `{minutes}` is replaced.
    pub too_many_attempts: &'static str,
    pub bad_form: &'static str,
    pub try_again: &'static str,
    pub dashboard: &'static str,
    pub balance: &'static str,
    pub credits: &'static str,
    pub spent_today: &'static str,
    pub spent_month: &'static str,
    pub requests: &'static str,
    pub recent_requests: &'static str,
    pub time: &'static str,
    pub model: &'static str,
    pub key: &'static str,
    pub tokens: &'static str,
    pub cost: &'static str,
    pub status: &'static str,
}

pub const EN: Texts = Texts {
    lang: "en",
    other_lang: "zh",
    other_lang_name: "中文",
    log_in: "Log in",
    logout: "Log out",
    name_or_email: "User name or e-mail",
    password: "Password",
    wrong_login: "Wrong user name or password.",
    too_many_attempts: "Too many failed attempts: try again in {minutes} min.",
    bad_form: "The form has expired: reload the page and try again.",
    try_again: "Something went wrong on our side: try again shortly.",
    dashboard: "Dashboard",
    balance: "Balance",
    credits: "credits",
    spent_today: "Spent today",
    spent_month: "Spent this month",
    requests: "requests",
    recent_requests: "Recent requests",
    time: "Time",
    model: "Model",
    key: "Key",
    tokens: "Tokens (in / out)",
    cost: "Cost",
    status: "Status",
};

pub const ZH: Texts = Texts {
    lang: "zh",
    other_lang: "en",
    other_lang_name: "English",
    log_in: "登录",
    logout: "退出",
    name_or_email: "用户名或邮箱",
    password: "密码",
    wrong_login: "用户名或密码错误。",
    too_many_attempts: "失败次数过多：请在 {minutes} 分钟后重试。",
    bad_form: "表单已过期：请刷新页面后重试。",
    try_again: "服务暂时出错：请稍后重试。",
    dashboard: "概览",
    balance: "余额",
    credits: "积分",
    spent_today: "今日消费",
    spent_month: "本月消费",
    requests: "次请求",
    recent_requests: "最近请求",
    time: "时间",
    model: "模型",
    key: "密钥",
    tokens: "Token（输入 / 输出）",
    cost: "费用",
    status: "状态",
};

impl Texts {
    /// The texts for `lang` (a language code, or an `Accept-Language`
    /// header): Chinese when it starts with `zh`, else English.
    pub fn of(lang: &str) -> &'static Texts {
        match lang.trim().to_ascii_lowercase().starts_with("zh") {
            true => &ZH,
            false => &EN,
        }
    }
}
