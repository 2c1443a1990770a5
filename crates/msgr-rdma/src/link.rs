pub struct Link;
